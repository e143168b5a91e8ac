"""Log lines in nats-server's shape: `[pid] 2026/11/25 02:05:27.544656 [INF] message`.

NATS operators read nats-server logs every day; the same layout and level words
(DBG, INF, WRN, ERR, FTL) make ours familiar and greppable the same way.
"""

from __future__ import annotations

import logging
import os
import sys
import time

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


def setup(level: str) -> None:
    """Send every log line to stderr at `level` (debug, info, warning, error)."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(NatsStyleFormatter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    logging.getLogger("pysyncobj").setLevel(max(root.level, logging.WARNING))
