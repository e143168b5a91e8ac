"""What the benchmarks need installed, installed on first use: packages, natsbench, py-spy.

nats-server and libnats-dev come from Debian's packages (apt-get, as root or through
`sudo -n`; the package lists are refreshed once if the install fails, as they are stale
or absent in fresh containers). natsbench is built from benchmarks/natsbench.c with gcc
whenever the binary is missing or older than its source. py-spy (for --profile) is
pip-installed into the running venv. Each failure is a BenchError that says what to
install by hand.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

from benchmarks.common import BIN, NATSBENCH, NATSBENCH_SRC
from benchmarks.common.cli import BenchError, console
from harness.nats_server import nats_server_path


def ensure_packages(need_server: bool) -> None:
    """apt-get install the packages this benchmark needs and does not find."""
    missing = []
    if need_server and not nats_server_path():
        missing.append("nats-server")
    if not Path("/usr/include/nats/nats.h").exists():
        missing.append("libnats-dev")
    if not missing:
        return
    if not shutil.which("apt-get"):
        raise BenchError(f"missing {', '.join(missing)} and there is no apt-get: install them by hand")
    prefix = [] if os.geteuid() == 0 else (["sudo", "-n"] if shutil.which("sudo") else None)
    if prefix is None:
        raise BenchError(f"missing {', '.join(missing)}: run as root or install them with apt-get")
    env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
    install = prefix + ["apt-get", "install", "-y", *missing]
    console.print(f"[bold]installing[/] {' '.join(missing)} with apt-get")
    try:
        if subprocess.run(install, env=env, timeout=600).returncode != 0:
            # the package lists may be stale or absent (fresh containers): refresh once
            subprocess.run(prefix + ["apt-get", "update"], env=env, timeout=600, check=True)
            subprocess.run(install, env=env, timeout=600, check=True)
    except (subprocess.CalledProcessError, subprocess.TimeoutExpired) as exc:
        raise BenchError(f"apt-get could not install {', '.join(missing)}: {exc}") from exc


def require_nats_server() -> str:
    exe = nats_server_path()
    if not exe:
        raise BenchError("nats-server is not installed (apt-get install -y nats-server)")
    return exe


def build_natsbench() -> None:
    """gcc natsbench.c into benchmarks/bin/ when the binary is missing or older than the source."""
    if NATSBENCH.exists() and NATSBENCH.stat().st_mtime >= NATSBENCH_SRC.stat().st_mtime:
        return
    gcc = shutil.which("gcc") or shutil.which("cc")
    if not gcc:
        raise BenchError("no C compiler: install gcc (apt-get install -y gcc)")
    BIN.mkdir(parents=True, exist_ok=True)
    cmd = [gcc, "-O2", "-Wall", "-o", str(NATSBENCH), str(NATSBENCH_SRC), "-lnats", "-lpthread"]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
    if proc.returncode != 0:
        raise BenchError(f"building natsbench failed:\n{' '.join(cmd)}\n{proc.stderr.strip()}")


def py_spy_path(install: bool) -> str:
    """py-spy next to the running interpreter or on PATH; pip-installed into this venv if absent."""
    local = Path(sys.executable).parent / "py-spy"
    found = str(local) if local.exists() else shutil.which("py-spy")
    if found or not install:
        if not found:
            raise BenchError("py-spy is not installed")
        return found
    console.print("[bold]installing[/] py-spy into this venv for --profile")
    proc = subprocess.run([sys.executable, "-m", "pip", "install", "-q", "py-spy"], timeout=300)
    if proc.returncode != 0 or not local.exists():
        raise BenchError("pip could not install py-spy; install it or run without --profile")
    return str(local)
