"""The monitoring port against real nodes: every endpoint's fields while load runs,
/healthz on a node cut off from the majority, /metrics through prometheus-client's own
parser, `mq9 top`, and JSON logs."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
import urllib.error
import urllib.request

from prometheus_client.parser import text_string_to_metric_families

from tests.mq9 import connect, create, send
from tests.nodes import REPO, NodeProcess, free_port, wait_for, wait_until


def with_monitor(nodes: list[NodeProcess]) -> list[NodeProcess]:
    for node in nodes:
        node.monitor_port = free_port()
        node.extra += ["--monitor", f"127.0.0.1:{node.monitor_port}"]
    return nodes


def monitor_url(node: NodeProcess) -> str:
    return f"http://127.0.0.1:{node.monitor_port}"


def http(node: NodeProcess, path: str) -> tuple[int, bytes, str]:
    try:
        with urllib.request.urlopen(monitor_url(node) + path, timeout=5) as r:
            return r.status, r.read(), r.headers.get("Content-Type", "")
    except urllib.error.HTTPError as e:
        return e.code, e.read(), e.headers.get("Content-Type", "")


async def get(node: NodeProcess, path: str) -> tuple[int, dict]:
    status, body, kind = await asyncio.to_thread(http, node, path)
    assert kind.startswith("application/json"), (path, kind)
    return status, json.loads(body)


def start_all(nodes: list[NodeProcess]) -> None:
    for node in nodes:
        node.start(wait=False)
    for node in nodes:
        node.wait_ready()


def metrics_of(node: NodeProcess) -> dict[str, list]:
    status, body, kind = http(node, "/metrics")
    assert status == 200 and kind.startswith("text/plain"), (status, kind)
    out: dict[str, list] = {}
    for family in text_string_to_metric_families(body.decode()):
        out[family.name] = family.samples
    return out


def value(samples: list, name: str, **labels) -> float:
    for s in samples:
        if s.name == name and all(s.labels.get(k) == v for k, v in labels.items()):
            return s.value
    raise AssertionError(f"no sample {name}{labels} in {[s.name for s in samples]}")


async def test_every_endpoint_on_three_nodes_while_load_runs(make_cluster):
    nodes = with_monitor(make_cluster(3, start=False))
    start_all(nodes)
    n1, n2, n3 = nodes
    producer = await connect(n1, name="monitor-producer")
    watcher = await connect(n2, name="monitor-watcher")
    try:
        box = (await create(producer, name="monitored.box", public=True, ttl=600))["mail_id"]
        await wait_for(_healthy(nodes), 20, "all three nodes healthy")
        seen: list = []

        async def on_message(msg) -> None:
            seen.append(msg)
        sub = await watcher.subscribe(f"$mq9.AI.MAILBOX.MSG.{box}.*", cb=on_message)
        _, varz_before = await get(n1, "/varz")
        for i in range(60):
            await send(producer, box, f"task {i}".encode(), priority="urgent" if i % 3 else "normal")
        await wait_for(lambda: len(seen) >= 60, 15, "the watcher to get 60 messages")

        _, varz = await get(n1, "/varz")
        for field in ("server_id", "server_name", "version", "now", "start", "uptime", "connections",
                      "total_connections", "in_msgs", "out_msgs", "in_bytes", "out_bytes", "mem", "cpu",
                      "subscriptions", "slow_consumers", "max_payload"):
            assert field in varz, field
        assert varz["in_msgs"] >= varz_before["in_msgs"] + 60
        assert varz["in_bytes"] > varz_before["in_bytes"] and varz["out_msgs"] > varz_before["out_msgs"]
        assert varz["connections"] >= 1 and varz["total_connections"] >= varz["connections"]
        assert varz["mem"] > 10 << 20 and varz["max_payload"] == 1 << 20

        _, connz = await get(n2, "/connz?subs=1&sort=msgs_to")
        mine = [c for c in connz["connections"] if c["name"] == "monitor-watcher"]
        assert mine, connz
        conn = mine[0]
        for field in ("cid", "ip", "port", "name", "lang", "version", "subscriptions", "pending_bytes",
                      "in_msgs", "out_msgs", "uptime"):
            assert field in conn, field
        assert conn["lang"] == "python3" and conn["out_msgs"] >= 60 and conn["subscriptions"] >= 1
        assert f"$mq9.AI.MAILBOX.MSG.{box}.*" in conn["subscriptions_list"]
        status, page = await get(n2, "/connz?limit=1&offset=0")
        assert status == 200 and len(page["connections"]) <= 1 and page["limit"] == 1
        status, bad = await get(n2, "/connz?sort=nonsense")
        assert status == 400 and "sort" in bad["error"]

        _, subsz = await get(n2, "/subsz?subs=1")
        assert subsz["num_subscriptions"] >= 1
        assert any(s["subject"] == f"$mq9.AI.MAILBOX.MSG.{box}.*" for s in subsz["subscriptions_list"])

        await wait_for(_routes_up(nodes), 15, "every node to have routes to the two others")

        leaders = set()
        for node in nodes:
            _, raftz = await get(node, "/raftz")
            for field in ("role", "term", "leader", "commit_index", "last_applied", "log_entries", "snapshot_index",
                          "peers"):
                assert field in raftz, field
            assert len(raftz["peers"]) == 2 and all("lag" in p and "match_index" in p for p in raftz["peers"])
            leaders.add(raftz["leader"])
            if raftz["role"] == "leader":
                assert all(p["lag"] is not None for p in raftz["peers"])
        assert len(leaders) == 1 and None not in leaders

        async def counted() -> bool:
            _, body = await get(n3, f"/mailboxz?search=monitored")
            rows = [m for m in body["mailboxes"] if m["mail_id"] == box]
            return bool(rows) and rows[0]["total"] >= 60
        await wait_for(counted, 20, "/mailboxz on n3 to count the 60 messages")
        _, mailboxz = await get(n3, "/mailboxz?search=monitored")
        row = next(m for m in mailboxz["mailboxes"] if m["mail_id"] == box)
        assert row["public"] is True and row["messages"]["urgent"] == 40 and row["messages"]["normal"] == 20
        assert row["bytes"] > 60 * len("task 0") and "payload" not in json.dumps(row)
        assert mailboxz["total_messages"] >= 60 and mailboxz["total_mailboxes"] >= 1
        _, none = await get(n3, "/mailboxz?search=no-such-thing")
        assert none["matched"] == 0 and none["mailboxes"] == []

        samples = {name: s for node in (n1,) for name, s in metrics_of(node).items()}
        assert value(samples["mq9_in_messages"], "mq9_in_messages_total") >= 60
        assert value(samples["mq9_raft_commit_index"], "mq9_raft_commit_index") > 0
        assert value(samples["mq9_connections"], "mq9_connections") >= 1
        assert value(samples["mq9_stored_messages"], "mq9_stored_messages", priority="urgent") >= 40
        assert value(samples["mq9_commit_latency_seconds"], "mq9_commit_latency_seconds_count") >= 1
        assert value(samples["mq9_apply_batch_commands"], "mq9_apply_batch_commands_count") >= 1
        assert "process_resident_memory_bytes" in samples
        await sub.unsubscribe()
    finally:
        await producer.close()
        await watcher.close()


def _healthy(nodes):
    async def check() -> bool:
        for node in nodes:
            status, body = await get(node, "/healthz")
            if status != 200:
                return False
        return True
    return check


def _routes_up(nodes):
    async def check() -> bool:
        for node in nodes:
            _, body = await get(node, "/routez")
            if body["num_routes"] != 2:
                return False
        return True
    return check


async def test_healthz_turns_503_on_a_minority_node_and_back(make_cluster):
    nodes = with_monitor(make_cluster(3, start=False))
    start_all(nodes)
    lonely, a, b = nodes
    await wait_for(_healthy(nodes), 20, "all three nodes healthy")
    a.pause()
    b.pause()
    try:
        async def unavailable() -> bool:
            status, body = await get(lonely, "/healthz")
            return status == 503 and body["status"] == "unavailable" and body["error"]
        await wait_for(unavailable, 10, "/healthz of the node left alone to say 503")
    finally:
        a.resume()
        b.resume()
    await wait_for(_healthy([lonely]), 20, "/healthz to say 200 again once the others are back")
    status, body = await get(lonely, "/healthz")
    assert (status, body) == (200, {"status": "ok"})


async def test_mq9_top_once_shows_nodes_connections_and_mailboxes(make_node):
    node = make_node("top1")
    with_monitor([node])
    node.start()
    nc = await connect(node, name="top-visible-client")
    try:
        await create(nc, name="top.box", ttl=600)
        await send(nc, "top.box", b"x")
        out = await asyncio.to_thread(subprocess.run, [sys.executable, "-m", "node.cli", "top", "--once",
                                                       "--monitor", monitor_url(node)],
                                      capture_output=True, text=True, timeout=30, cwd=REPO)
        assert out.returncode == 0, out.stderr
        assert "Nodes" in out.stdout and "top1" in out.stdout and "leader" in out.stdout
        assert "top-visible-client" in out.stdout and "top.box" in out.stdout
        bad = subprocess.run([sys.executable, "-m", "node.cli", "top", "--once", "--monitor", "http://127.0.0.1:1"],
                             capture_output=True, text=True, timeout=30, cwd=REPO)
        assert "unreachable" in bad.stdout and "Traceback" not in bad.stdout + bad.stderr
    finally:
        await nc.close()


def test_json_logs_and_a_bare_monitor_port_binds_loopback_only(make_node):
    node = make_node("jsonlog", extra=["--log-format", "json"])
    port = free_port()
    node.extra += ["--monitor", str(port)]
    node.monitor_port = port
    node.start()
    wait_until(lambda: "http monitor" in node.log_path.read_text(), 10, "the monitor's log line")
    lines = [json.loads(line) for line in node.log_path.read_text().splitlines() if line.startswith("{")]
    assert all({"time", "level", "logger", "msg"} <= set(line) for line in lines)
    assert any("http monitor on http://127.0.0.1:" in line["msg"] for line in lines)
    status, body, _ = http(node, "/healthz")
    assert status in (200, 503)
    listening = subprocess.run(["ss", "-ltnH", f"sport = :{port}"], capture_output=True, text=True).stdout
    if listening.strip():  # ss is there: the port is bound on loopback, not on every interface
        assert [line.split()[3] for line in listening.splitlines()] == [f"127.0.0.1:{port}"], listening
