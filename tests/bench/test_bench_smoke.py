"""The benchmark still runs: `mq9_bench.py --quick --only mq9`, every workload once.

Not a measurement (figures from a CI machine mean nothing, and timed tests are not
tests): it checks that the harness starts a three-node cluster, that every workload's
client (nats-py and the nats.c load generator) finishes with all its messages and no
error, and that the JSON report is written. JetStream's side is left out: it needs
nothing of ours, and nats.c's JetStream pull fetch aborts now and then (see
docs/benchmarks.md). Run by `make bench-smoke` (and `.ci/run`), not by `make test`.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
REPORT = REPO / "benchmarks" / "out" / "mq9_bench.json"
WORKLOADS = ["w1", "w2", "w2c", "w3", "w3c", "w4", "w4c", "w5", "w5c", "w6", "w7", "w8"]


@pytest.fixture(scope="module")
def report() -> dict:
    REPORT.unlink(missing_ok=True)
    proc = subprocess.run([sys.executable, str(REPO / "benchmarks" / "mq9_bench.py"), "--quick", "--only", "mq9"],
                          cwd=REPO, capture_output=True, text=True, timeout=900)
    print(proc.stdout[-4000:])
    print(proc.stderr[-4000:], file=sys.stderr)
    assert REPORT.exists(), f"no report written (exit {proc.returncode})"
    return json.loads(REPORT.read_text())


@pytest.mark.parametrize("key", WORKLOADS)
def test_workload_completes(report: dict, key: str) -> None:
    result = report["results"]["mq9"].get(key)
    assert result is not None, f"{key} did not run"
    assert "error" not in result, result.get("error")
    if key == "w6":
        assert result.get("recovery_s") is not None
    else:
        assert result.get("complete") is True, result


def test_the_table_has_every_workload(report: dict) -> None:
    assert {row["key"] for row in report["table"]} >= set(WORKLOADS)
