"""mq9_bench.py's JetStream cluster: n nats-server processes, the streams, who leads.

Each server runs from a config file (JetStream store and limits, and a cluster block
when n > 1). Ready means JetStream answers on every server and the file stream BENCH
(subjects bench.>, R = n) exists with every replica current. Workload 5 gets a fresh
work-queue stream BENCHWQ with a durable pull consumer whose max_ack_pending is the
ceiling mq9's workers share. The leader the failover workload kills is BENCH's stream
leader, from $JS.API.STREAM.INFO.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

from benchmarks.clients.subjects import STREAM, WQ_STREAM, WQ_SUBJECT
from benchmarks.common.cli import BenchError
from benchmarks.common.install import require_nats_server
from benchmarks.common.servers import free_port
from benchmarks.mq9.cluster import NODE_OPTIONS, Cluster, arun, connected
from benchmarks.mq9.plan import WQ_MAX_UNACKED
from harness.nats_server import jetstream_config
from harness.process import Process, wait_ready_all


class JsCluster(Cluster):
    system = "js"

    def __init__(self, n: int, workdir: Path) -> None:
        super().__init__(n, workdir)
        exe = require_nats_server()
        self.ports = [free_port() for _ in range(n)]
        self.cluster_ports = [free_port() for _ in range(n)]
        for i in range(n):
            store = workdir / f"js{i + 1}"
            self.data_dirs.append(store)
            conf = workdir / f"js{i + 1}.conf"
            conf.write_text(jetstream_config(i, self.ports, self.cluster_ports, store))
            self.nodes.append(Process(f"nats-server js{i + 1}", [exe, "-c", str(conf)], workdir / f"js{i + 1}.log",
                                      port=self.ports[i], **NODE_OPTIONS))

    def start(self, timeout: float = 60.0) -> None:
        deadline = time.monotonic() + timeout
        for node in self.nodes:
            node.start(wait=False)
        wait_ready_all(self.nodes, max(1.0, deadline - time.monotonic()), interval=0.05)
        last = ""
        while True:
            for node in self.nodes:
                if not node.alive():
                    raise BenchError(f"{node.name} exited with {node.proc.returncode}:\n{node.log_tail()}")
            try:
                arun(self._create_stream(), 15)
                return
            except Exception as exc:
                last = f"{type(exc).__name__}: {exc}"
            if time.monotonic() > deadline:
                raise BenchError(f"JetStream did not become ready within {timeout:.0f}s (last: {last}); "
                                 f"logs:\n{self.log_tails()}")
            time.sleep(0.3)

    async def _create_stream(self) -> None:
        """JetStream answers on every server, the stream exists and (R3) every replica is current."""
        from nats.js.api import StorageType, StreamConfig

        for url in self.urls:
            async with connected(url) as nc:
                msg = await nc.request("$JS.API.INFO", b"", timeout=3)
                if b'"error"' in msg.data:
                    raise RuntimeError(msg.data.decode(errors="replace")[:200])
        async with connected(self.urls[0]) as nc:
            js = nc.jetstream(timeout=5)
            try:
                await js.stream_info(STREAM)
            except Exception:
                await js.add_stream(StreamConfig(name=STREAM, subjects=["bench.>"], storage=StorageType.FILE,
                                                 num_replicas=self.n))
            info = await js.stream_info(STREAM)
            if self.n > 1:
                cl = info.cluster
                if cl is None or not cl.leader or len(cl.replicas or []) != self.n - 1 \
                        or not all(r.current for r in cl.replicas):
                    raise RuntimeError(f"stream replicas not current yet: {cl}")

    def purge(self) -> None:
        async def go() -> None:
            async with connected(self.urls[0]) as nc:
                await nc.jetstream(timeout=10).purge_stream(STREAM)
        arun(go(), 30)

    def stream_messages(self, stream: str = STREAM) -> int:
        async def go() -> int:
            async with connected(self.urls[0]) as nc:
                return (await nc.jetstream(timeout=10).stream_info(stream)).state.messages
        return arun(go(), 30)

    def reset_work_queue(self, durable: str) -> None:
        """A fresh work-queue stream BENCHWQ (R = nodes) and its durable pull consumer."""
        from nats.js.api import AckPolicy, ConsumerConfig, RetentionPolicy, StorageType, StreamConfig

        async def go() -> None:
            async with connected(self.urls[0]) as nc:
                js = nc.jetstream(timeout=10)
                try:
                    await js.delete_stream(WQ_STREAM)
                except Exception:
                    pass
                await js.add_stream(StreamConfig(name=WQ_STREAM, subjects=["benchwq.>"], storage=StorageType.FILE,
                                                 num_replicas=self.n, retention=RetentionPolicy.WORK_QUEUE))
                await js.add_consumer(WQ_STREAM, ConsumerConfig(
                    durable_name=durable, ack_policy=AckPolicy.EXPLICIT, ack_wait=30, max_ack_pending=WQ_MAX_UNACKED,
                    filter_subject=WQ_SUBJECT))
        deadline = time.monotonic() + 45
        while True:
            try:
                arun(go(), 30)
                return
            except Exception as exc:
                if time.monotonic() > deadline:
                    raise BenchError(f"could not create the work-queue stream: {type(exc).__name__}: {exc}")
                time.sleep(0.5)

    def leader_index(self) -> tuple[int | None, str]:
        """The BENCH stream's leader from $JS.API.STREAM.INFO (cluster.leader is a server name)."""
        async def go() -> str | None:
            async with connected(next(u for u, node in zip(self.urls, self.nodes) if node.alive())) as nc:
                msg = await nc.request(f"$JS.API.STREAM.INFO.{STREAM}", b"", timeout=5)
                return (json.loads(msg.data).get("cluster") or {}).get("leader")
        try:
            name = arun(go(), 15)
        except Exception:
            return None, "stream info failed"
        if name and name.startswith("js") and name[2:].isdigit() and 1 <= int(name[2:]) <= self.n:
            return int(name[2:]) - 1, "stream info"
        return None, f"stream info leader {name!r}"
