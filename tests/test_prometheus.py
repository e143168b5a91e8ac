"""Debian's Prometheus scrapes three real nodes, and a metric comes back from its HTTP API
for every one of them (the same scrape config shape as deploy/prometheus/prometheus.yml).
Skipped, with the reason, only where the binary cannot be had (`.ci/run` installs it)."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import urllib.parse
import urllib.request

import pytest

from tests.nodes import REPO, free_port, port_open, wait_for
from tests.test_monitor import _healthy, start_all, with_monitor

PROMETHEUS = shutil.which("prometheus")

pytestmark = pytest.mark.skipif(PROMETHEUS is None, reason="prometheus is not installed (apt-get install -y prometheus)")


def query(port: int, expr: str) -> list[dict]:
    url = f"http://127.0.0.1:{port}/api/v1/query?" + urllib.parse.urlencode({"query": expr})
    with urllib.request.urlopen(url, timeout=5) as r:
        body = json.loads(r.read())
    assert body["status"] == "success", body
    return body["data"]["result"]


async def test_prometheus_scrapes_all_three_nodes(make_cluster, tmp_path):
    nodes = with_monitor(make_cluster(3, start=False))
    start_all(nodes)
    await wait_for(_healthy(nodes), 20, "all three nodes healthy")
    targets = ", ".join(f"'127.0.0.1:{n.monitor_port}'" for n in nodes)
    config = tmp_path / "prometheus.yml"
    config.write_text(f"""global:
  scrape_interval: 1s
  evaluation_interval: 1s
scrape_configs:
  - job_name: mq9
    static_configs:
      - targets: [{targets}]
""")
    port = free_port()
    log = open(tmp_path / "prometheus.log", "wb")
    proc = subprocess.Popen([PROMETHEUS, f"--config.file={config}", f"--storage.tsdb.path={tmp_path / 'tsdb'}",
                             f"--web.listen-address=127.0.0.1:{port}"], stdout=log, stderr=subprocess.STDOUT)
    try:
        await wait_for(lambda: port_open("127.0.0.1", port), 30, "prometheus to listen")

        def scraped() -> bool:
            up = query(port, 'up{job="mq9"}')
            commits = query(port, "mq9_raft_commit_index")
            return len(up) == 3 and all(r["value"][1] == "1" for r in up) and len(commits) == 3
        await wait_for(scraped, 60, "prometheus to scrape all three nodes", interval=0.5)
        commits = query(port, "mq9_raft_commit_index")
        assert {r["metric"]["instance"] for r in commits} == {f"127.0.0.1:{n.monitor_port}" for n in nodes}
        assert all(float(r["value"][1]) > 0 for r in commits)
        leaders = query(port, "sum(mq9_raft_leader)")
        assert leaders and leaders[0]["value"][1] == "1"
        # every series the Grafana dashboard draws exists
        dashboard = (REPO / "deploy" / "prometheus" / "grafana-dashboard.json").read_text()
        wanted = set(re.findall(r"\b((?:mq9|process)_[a-z_]+)", dashboard))
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/api/v1/label/__name__/values", timeout=5) as r:
            known = set(json.loads(r.read())["data"])
        assert wanted and wanted <= known, f"the dashboard draws series Prometheus never scraped: {sorted(wanted - known)}"
    finally:
        proc.terminate()
        try:
            proc.wait(15)
        except subprocess.TimeoutExpired:
            proc.kill()
        log.close()
