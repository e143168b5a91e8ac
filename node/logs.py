"""Log lines in nats-server's shape: `[pid] 2026/11/25 02:05:27.544656 [INF] message`.

NATS operators read nats-server logs every day; the same layout and level words
(DBG, INF, WRN, ERR, FTL) make ours familiar and greppable the same way. With
`--log-format json` each line is one JSON object instead (`time` in RFC 3339 with
microseconds, `level` in the same words, `logger`, `pid`, `msg`, and `exc` for a
traceback), which log shippers (Vector, Fluent Bit, Loki) take without a parser.
"""

from __future__ import annotations

import json
import logging
import os
import sys
import time
from datetime import datetime, timezone

_LEVELS = {"DEBUG": "DBG", "INFO": "INF", "WARNING": "WRN", "ERROR": "ERR", "CRITICAL": "FTL"}


class NatsStyleFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        ts = time.strftime("%Y/%m/%d %H:%M:%S", time.localtime(record.created))
        micros = int((record.created % 1) * 1_000_000)
        level = _LEVELS.get(record.levelname, record.levelname[:3])
        text = f"[{os.getpid()}] {ts}.{micros:06d} [{level}] {record.getMessage()}"
        if record.exc_info:
            text += "\n" + self.formatException(record.exc_info)
        return text


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        line = {
            "time": datetime.fromtimestamp(record.created, timezone.utc).isoformat(timespec="microseconds"),
            "level": _LEVELS.get(record.levelname, record.levelname[:3]),
            "logger": record.name,
            "pid": os.getpid(),
            "msg": record.getMessage(),
        }
        if record.exc_info:
            line["exc"] = self.formatException(record.exc_info)
        return json.dumps(line, ensure_ascii=False)


def setup(level: str, fmt: str = "text") -> None:
    """Send every log line to stderr at `level` (debug, info, warning, error), as
    nats-server's text lines or (`fmt="json"`) one JSON object per line."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter() if fmt == "json" else NatsStyleFormatter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    logging.getLogger("pysyncobj").setLevel(max(root.level, logging.WARNING))
