"""Facts about the machine a run measured, for its report: a figure means little without them.

CPU model and cores, the load when the run started, kernel, Python, the nats-server and
nats-py versions, the commit; with `more`, also RAM, the full commit, whether the tree
had uncommitted changes, and the libnats package version (mq9_bench.py reports those).
"""

from __future__ import annotations

import os
import platform
import subprocess
import time
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path

from benchmarks.common import REPO
from harness.nats_server import nats_server_path


def _out(cmd: list[str]) -> str:
    try:
        return subprocess.run(cmd, capture_output=True, text=True, timeout=10).stdout.strip()
    except (OSError, subprocess.TimeoutExpired):
        return ""


def machine_info(more: bool = False) -> dict:
    cpu = platform.processor() or "unknown"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    exe = nats_server_path()
    try:
        nats_py = version("nats-py")
    except PackageNotFoundError:
        nats_py = "unknown"
    info = {
        "cpu_model": cpu,
        "cores": os.cpu_count(),
        "load_avg_at_start": list(os.getloadavg()),
        "kernel": platform.release(),
        "python": platform.python_version(),
        "nats_server": _out([exe, "--version"]) if exe else "not installed",
        "nats_py": nats_py,
        "git_commit": _out(["git", "-C", str(REPO), "rev-parse", "--short", "HEAD"]),
        "time": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
    }
    if more:
        info.update(_more())
    return info


def _more() -> dict:
    info: dict = {}
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                info["ram_gib"] = round(int(line.split()[1]) / (1 << 20), 1)
    except OSError:
        pass
    try:
        info["git_commit_full"] = subprocess.run(["git", "-C", str(REPO), "rev-parse", "HEAD"], capture_output=True,
                                                 text=True, timeout=10).stdout.strip()
        dirty = subprocess.run(["git", "-C", str(REPO), "status", "--porcelain"], capture_output=True, text=True,
                               timeout=10).stdout
        info["git_dirty"] = bool(dirty.strip())
    except (OSError, subprocess.TimeoutExpired):
        pass
    try:
        info["libnats"] = subprocess.run(["dpkg-query", "-W", "-f=${Version}", "libnats-dev"], capture_output=True,
                                         text=True, timeout=10).stdout.strip()
    except (OSError, subprocess.TimeoutExpired):
        pass
    return info
