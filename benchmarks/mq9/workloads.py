"""mq9_bench.py's workloads 1-8 and the window sweep: one method each, one system at a time.

Each method sets up what its workload needs on the cluster under test (a fresh mailbox,
or a purged stream / a fresh work-queue stream for JetStream), builds the client's
command line and runs it through the Runner; it returns the client's result, with
setup facts added (the pre-fill of workload 4, the leader killed in 6, memory and disk
in 7). Both systems take the same code path wherever the workload is the same; where it
is not (a mailbox vs a stream subject, a queue group vs a durable pull consumer), the
branch says so.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import threading
import time
from pathlib import Path

from benchmarks.clients.subjects import MQ9_MSG, WQ_STREAM, WQ_SUBJECT
from benchmarks.common.cli import BenchError
from benchmarks.mq9 import console
from benchmarks.mq9.cluster import Cluster, dir_bytes
from benchmarks.mq9.plan import FULL, QUICK, SYSTEM_LABEL, WQ_MAX_UNACKED, WQ_WORKERS
from benchmarks.mq9.runner import Runner, c_client, py_client


class Bench:
    """The workloads of one run; `name(key)` makes each mailbox name unique."""

    def __init__(self, args: argparse.Namespace, runner: Runner, workdir: Path) -> None:
        self.args = args
        self.sizes = QUICK if args.quick else FULL
        self.runner = runner
        self.workdir = workdir
        self.serial = 0

    def name(self, key: str) -> str:
        self.serial += 1
        return f"bench.{key}.r{self.serial}{os.urandom(2).hex()}"

    def label(self, cluster: Cluster, text: str) -> str:
        return f"{SYSTEM_LABEL[cluster.system]:>9}  {text}"

    # 1, 2, 8 and the sweep: acknowledged publishes through nats-py
    def ackpub(self, c: Cluster, key: str, window: int, count: int, duration: float, size: int = 128) -> dict:
        if c.system == "mq9":
            target = c.create_mailbox(self.name(key))
        else:
            c.purge()
            target = f"bench.{key}"
        timeout = duration + 30
        cmd = py_client("ackpub", c.system, c.urls, target, timeout, count=count, window=window,
                        duration=duration, size=size)
        return self.runner.run(cmd, self.label(c, f"{key}: ack'd publish x{window}, {size} B"), timeout + 30, count)

    def w1(self, c: Cluster) -> dict:
        count, dur = self.sizes.w1
        return self.ackpub(c, "w1", 1, count, dur)

    def w2(self, c: Cluster) -> dict:
        count, dur = self.sizes.w2
        return self.ackpub(c, "w2", 256, count, dur)

    def w8(self, c: Cluster) -> dict:
        count, dur = self.sizes.w8
        return self.ackpub(c, "w8", 256, count, dur, size=16384)

    def sweep(self, c: Cluster, window: int) -> dict:
        count, dur = self.sizes.sweep
        return self.ackpub(c, f"sweep{window}", window, count, dur)

    def w2c(self, c: Cluster) -> dict:
        count, cap = self.sizes.w2c
        if c.system == "mq9":
            subject = MQ9_MSG + c.create_mailbox(self.name("w2c")) + ".normal"
            cmd = c_client("mq9pub", c.urls[:1], subject, count, cap, "-w", "256")
        else:
            c.purge()
            cmd = c_client("jspub", c.urls[:1], "bench.w2c", count, cap, "-w", "256")
        return self.runner.run(cmd, self.label(c, "w2c: ack'd publish x256 (C)"), cap + 30, count)

    def w3(self, c: Cluster) -> dict:
        count, cap = self.sizes.w3
        target = c.create_mailbox(self.name("w3")) if c.system == "mq9" else "bench.w3"
        if c.system == "js":
            c.purge()
        cmd = py_client("fanout", c.system, c.urls, target, cap, count=count, subs=10)
        return self.runner.run(cmd, self.label(c, "w3: fan-out to 10 subscribers"), cap + 40, count * 10)

    def w3c(self, c: Cluster) -> dict:
        count, cap = self.sizes.w3c
        if c.system == "mq9":
            box = c.create_mailbox(self.name("w3c"))
            cmd = c_client("fanout", c.urls, f"{MQ9_MSG}{box}.normal", count, cap, "-R", f"{MQ9_MSG}{box}.*",
                           "-k", "10")
        else:
            c.purge()
            cmd = c_client("jsfanout", c.urls, "bench.w3c", count, cap, "-k", "10")
        return self.runner.run(cmd, self.label(c, "w3c: fan-out to 10 subscribers (C)"), cap + 40, count * 10)

    def _w4_filled(self, c: Cluster) -> tuple[str, dict]:
        """Pre-fill workload 4's mailbox / stream once per cluster: (target, fill result).
        The nats-py and nats.c catch-ups both read it (reading consumes nothing)."""
        if getattr(c, "w4_filled", None):
            return c.w4_filled
        count = self.sizes.w4[0]
        fill_s = self.sizes.w4_fill_s
        if c.system == "mq9":
            box = c.create_mailbox(self.name("w4"))
            subjects = ",".join(f"{MQ9_MSG}{box}.{w}" for w in ("critical", "normal", "low"))
            fill = c_client("load", c.urls[:1], subjects, count, fill_s, "-b", "10000")
            target = box
        else:
            c.purge()
            subjects = ",".join(f"bench.w4.{w}" for w in ("critical", "normal", "low"))
            fill = c_client("jspub", c.urls[:1], subjects, count, fill_s, "-w", "1024")
            target = "bench.w4.>"
        filled = self.runner.run(fill, self.label(c, "w4: pre-filling (C, not timed)"), fill_s + 30, count)
        if "error" in filled or not filled.get("complete"):
            raise BenchError(f"pre-fill failed: {filled.get('error') or filled}")
        # the subscriber reads from the last node: wait until it has applied everything
        if c.system == "mq9":
            total = c.wait_total(target, count, len(c.urls) - 1, 30)
            if total != count:
                raise BenchError(f"after the pre-fill node n{len(c.urls)} holds {total} of {count} messages")
        else:
            stored = c.stream_messages()
            if stored != count:
                raise BenchError(f"after the pre-fill the stream holds {stored} of {count} messages")
        c.w4_filled = (target, filled)
        return c.w4_filled

    def w4(self, c: Cluster) -> dict:
        def cmd(target: str, count: int, cap: float) -> list[str]:
            return py_client("catchup", c.system, c.urls, target, cap, count=count)
        return self._catchup(c, "w4", cmd)

    def w4c(self, c: Cluster) -> dict:
        def cmd(target: str, count: int, cap: float) -> list[str]:
            if c.system == "mq9":
                return c_client("catchup", c.urls, f"{MQ9_MSG}{target}.*", count, cap)
            return c_client("jscatchup", c.urls, target, count, cap)
        return self._catchup(c, "w4c", cmd, " (C)")

    def _catchup(self, c: Cluster, key: str, command, suffix: str = "") -> dict:
        """A new subscriber reads workload 4's pre-filled mailbox / stream."""
        count, cap = self.sizes.w4
        target, filled = self._w4_filled(c)
        out = self.runner.run(command(target, count, cap), self.label(c, f"{key}: catch-up of {count:,} msgs{suffix}"),
                              cap + 30, count)
        out["fill"] = filled
        return out

    def _work_queue_mailbox(self, c: Cluster, key: str) -> str:
        """mq9's work queue: each of the WQ_WORKERS members gets an equal share of the unacked ceiling."""
        return c.create_mailbox(self.name(key), ack_wait=30, max_in_flight=WQ_MAX_UNACKED // WQ_WORKERS)

    def w5(self, c: Cluster) -> dict:
        count, cap = self.sizes.w5
        if c.system == "mq9":
            target = self._work_queue_mailbox(c, "w5")
        else:
            target = "workers"
            c.reset_work_queue(target)
        cmd = py_client("workqueue", c.system, c.urls, target, cap, count=count, workers=WQ_WORKERS, batch=64)
        return self.runner.run(cmd, self.label(c, "w5: work queue, 4 workers"), cap + 40, count)

    def w5c(self, c: Cluster) -> dict:
        """Run once more if the C client died of a signal: nats.c 3.4.1 aborted with a double
        free inside its JetStream pull fetch in about one run in six (never with mq9)."""
        out = self._w5c_once(c)
        if "exited -" in str(out.get("error", "")):
            console.print(f"[yellow]  w5c: the C client crashed ({out['error'][:90]}); running it again[/]")
            first = out["error"]
            out = self._w5c_once(c)
            out["retried_after"] = first
        return out

    def _w5c_once(self, c: Cluster) -> dict:
        count, cap = self.sizes.w5c
        if c.system == "mq9":
            box = self._work_queue_mailbox(c, "w5c")
            cmd = c_client("mq9wq", c.urls, f"{MQ9_MSG}{box}.normal", count, cap, "-R", f"{MQ9_MSG}{box}.*",
                           "-k", str(WQ_WORKERS), "-q", "workers")
        else:
            c.reset_work_queue("cworkers")
            cmd = c_client("jswq", c.urls, WQ_SUBJECT, count, cap, "-D", f"{WQ_STREAM}:cworkers", "-k", str(WQ_WORKERS),
                           "-B", "64")
        return self.runner.run(cmd, self.label(c, "w5c: work queue, 4 workers (C)"), cap + 40, count)

    def w6(self, c: Cluster) -> dict:
        if c.n < 3:
            return {"na": "n/a (1 node)"}
        target = c.create_mailbox(self.name("w6")) if c.system == "mq9" else "bench.w6"
        leader, method = c.leader_index()
        if leader is None:
            return {"error": f"could not find the leader ({method})"}
        client_node = (leader + 1) % c.n
        state: dict = {"killed": None, "leader": leader, "method": method}

        def on_line(line: str, proc: subprocess.Popen) -> None:
            if state["killed"] is not None or not line.startswith("#P "):
                return
            if int(line.split()[1]) < 30:  # ~0.5 s of steady acknowledged publishes first
                return
            now_leader, how = c.leader_index()  # it may have moved meanwhile
            victim = now_leader if now_leader is not None and now_leader != client_node else state["leader"]
            state.update(leader=victim, method=how if now_leader is not None else state["method"])
            t_kill = time.monotonic()
            c.nodes[victim].kill()
            state["killed"] = t_kill
            try:
                proc.stdin.write(f"kill {t_kill}\n")
                proc.stdin.flush()
            except OSError:
                pass

        timeout = self.sizes.w6_s
        cmd = py_client("failover", c.system, [c.urls[client_node]], target, timeout, interval=0.01,
                        request_timeout=1.0, after=0.5)
        out = self.runner.run(cmd, self.label(c, "w6: failover (kill the leader)"), timeout + 30, None,
                              on_line=on_line, stdin=True)
        out["killed_node"] = c.nodes[state["leader"]].name
        out["leader_found_by"] = state["method"]
        out["client_node"] = c.nodes[client_node].name
        if state["killed"] is None and "error" not in out:
            out["error"] = "the leader was never killed (the client did not reach a steady state)"
        try:
            new_leader, _ = c.leader_index()
            out["new_leader"] = c.nodes[new_leader].name if new_leader is not None else None
        except Exception:
            pass
        if "error" in out and state["killed"] is not None:
            out["log_tails"] = c.log_tails()
        return out

    def w7(self, c: Cluster) -> dict:
        count, cap = self.sizes.w7
        if c.system == "mq9":
            box = c.create_mailbox(self.name("w7"))
            cmd = c_client("load", c.urls[:1], f"{MQ9_MSG}{box}.normal", count, cap, "-b", "20000")
        else:
            c.purge()
            cmd = c_client("jspub", c.urls[:1], "bench.w7", count, cap, "-w", "4096")
        time.sleep(0.5)
        disk0 = [dir_bytes(d) for d in c.data_dirs]
        mem0 = [n.memory() for n in c.nodes]
        peaks = [m.get("VmRSS", 0) for m in mem0]
        stop = threading.Event()

        def sample() -> None:
            while not stop.is_set():
                for i, node in enumerate(c.nodes):
                    peaks[i] = max(peaks[i], node.memory().get("VmRSS", 0))
                stop.wait(0.1)

        sampler = threading.Thread(target=sample, daemon=True)
        sampler.start()
        try:
            out = self.runner.run(cmd, self.label(c, f"w7: storing {count:,} msgs (C)"), cap + 30, count)
            if "error" in out:
                return out
            stored = out.get("flushed", out.get("completed", 0))
            # let followers apply and files settle (mq9 followers apply asynchronously)
            if c.system == "mq9":
                totals = [c.wait_total(box, stored, i, 60) for i in range(c.n)]
                out["stored_per_node"] = totals
            else:
                out["stored_in_stream"] = c.stream_messages()
            last = None
            deadline = time.monotonic() + 10
            while time.monotonic() < deadline:
                sizes = [dir_bytes(d) for d in c.data_dirs]
                if sizes == last:
                    break
                last = sizes
                time.sleep(1.0)
        finally:
            stop.set()
            sampler.join(5)
        hwm = [n.memory().get("VmHWM", 0) for n in c.nodes]
        grew = [s - s0 for s, s0 in zip(last, disk0)]
        mib = 1 << 20
        out.update({
            "messages": stored,
            "peak_rss_mib": round(max(max(peaks), max(hwm)) / mib, 1),
            "peak_rss_per_node_mib": [round(max(p, h) / mib, 1) for p, h in zip(peaks, hwm)],
            "rss_before_mib": [round(m.get("VmRSS", 0) / mib, 1) for m in mem0],
            "disk_bytes_per_node": last,
            "disk_growth_per_node": grew,
            "disk_bytes_per_msg": round(sum(grew) / len(grew) / stored, 1) if stored else None,
        })
        return out
