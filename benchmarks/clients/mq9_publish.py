"""mq9_clients.py's publishing workloads: acknowledged publishes (1, 2, 8) and failover (6).

An acknowledged publish is, for mq9, a request to `$mq9.AI.MAILBOX.MSG.{mail_id}.normal`
answered after the Raft commit, and for JetStream `js.publish` answered with its PubAck;
W coroutines each send the next one when their reply came. The failover client publishes
one at a time and reads "kill <monotonic time>" from stdin, written by the harness the
moment it SIGKILLed the leader; it reports the time from then to the first publish
acknowledged after it.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import time

from benchmarks.clients.common import PENDING_SIZE, Progress, client_name, close_all, connect, errors, note
from benchmarks.clients.subjects import mq9_subject


def percentiles(lat_s: list[float]) -> dict:
    if not lat_s:
        return {"p50_ms": None, "p90_ms": None, "p99_ms": None, "max_ms": None, "mean_ms": None}
    xs = sorted(lat_s)

    def pct(p: float) -> float:
        return round(xs[min(len(xs) - 1, int(p * (len(xs) - 1) + 0.5))] * 1e3, 3)

    return {"p50_ms": pct(0.5), "p90_ms": pct(0.9), "p99_ms": pct(0.99), "max_ms": round(xs[-1] * 1e3, 3),
            "mean_ms": round(sum(xs) / len(xs) * 1e3, 3)}


def acknowledged_publisher(nc, a: argparse.Namespace):
    """One acknowledged publish of `a.size` bytes: an mq9 request answered after the
    Raft commit, or a JetStream publish answered with its PubAck."""
    payload = b"x" * a.size
    if a.system == "mq9":
        subject = mq9_subject(a.target)

        async def one() -> None:
            msg = await nc.request(subject, payload, timeout=a.request_timeout)
            if b'"error"' in msg.data:
                raise RuntimeError(msg.data[:200].decode(errors="replace"))
    else:
        js = nc.jetstream(timeout=a.request_timeout)

        async def one() -> None:
            await js.publish(a.target, payload, timeout=a.request_timeout)
    return one


async def ackpub(a: argparse.Namespace) -> dict:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + a.timeout
    nc = await connect(a.urls[0], "bench-ackpub", pending_size=PENDING_SIZE)
    one = acknowledged_publisher(nc, a)

    # a few untimed requests: connection, inbox subscription and the first write path warm
    for _ in range(min(20, a.count)):
        try:
            await one()
        except Exception as exc:
            note(exc)
    counts = {"issued": 0, "ok": 0, "errors": 0}
    lat: list[float] = []
    progress = Progress(a.count)
    stop_at = loop.time() + a.duration

    async def worker() -> None:
        while counts["issued"] < a.count and loop.time() < stop_at and loop.time() < deadline:
            counts["issued"] += 1
            t0 = time.perf_counter()
            try:
                await one()
            except Exception as exc:
                counts["errors"] += 1
                note(exc)
                continue
            lat.append(time.perf_counter() - t0)
            counts["ok"] += 1
            progress(counts["ok"])

    start = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(a.window)))
    secs = time.perf_counter() - start
    hit_deadline = loop.time() >= deadline and counts["ok"] + counts["errors"] < a.count
    progress(counts["ok"], force=True)
    await nc.close()
    done = counts["ok"]
    # a run that stopped at --duration is a complete sample; one cut by the deadline is not
    return {"workload": "ackpub", "system": a.system, "client": client_name(), "msgs": a.count, "size": a.size,
            "window": a.window, "completed": done, "errors": counts["errors"], "seconds": round(secs, 6),
            "rate": round(done / secs, 1) if secs > 0 else 0.0, **percentiles(lat),
            "stopped_by_duration": done + counts["errors"] < a.count and not hit_deadline,
            "complete": counts["errors"] == 0 and not hit_deadline}

async def failover(a: argparse.Namespace) -> dict:
    """One acknowledged publish at a time, every `interval`; the harness kills the leader.

    Reports the time from the kill to the first successful acknowledged publish answered
    after it, the longest gap between two successes, and the errors in between.
    """
    loop = asyncio.get_running_loop()
    deadline = loop.time() + a.timeout
    nc = await connect(a.urls[0], "bench-failover", pending_size=PENDING_SIZE)
    one = acknowledged_publisher(nc, a)

    kill_at: list[float] = []

    async def read_stdin() -> None:
        reader = asyncio.StreamReader()
        await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)
        while True:
            line = await reader.readline()
            if not line:
                return
            parts = line.split()
            if len(parts) == 2 and parts[0] == b"kill":
                kill_at.append(float(parts[1]))

    stdin_task = asyncio.create_task(read_stdin())
    oks = errs = 0
    errs_after_kill = 0
    last_ok = None
    max_gap = 0.0
    first_ok_after = None
    try:
        while loop.time() < deadline:
            t0 = time.monotonic()
            try:
                await one()
            except Exception as exc:
                errs += 1
                if kill_at:
                    errs_after_kill += 1
                if len(errors) < 5:
                    note(exc)
                await asyncio.sleep(0.01)  # no hot loop on fast failures (no responders)
                continue
            t1 = time.monotonic()
            oks += 1
            if last_ok is not None:
                max_gap = max(max_gap, t1 - last_ok)
            last_ok = t1
            if oks % 10 == 0:
                print(f"#P {oks} 0", flush=True)
            if kill_at and first_ok_after is None and t1 > kill_at[0]:
                first_ok_after = (t0, t1)
            if first_ok_after is not None and t1 - first_ok_after[1] > a.after:
                break
            await asyncio.sleep(a.interval)
    finally:
        stdin_task.cancel()
        await close_all([nc])
    out = {"workload": "failover", "system": a.system, "client": client_name(), "ok": oks, "errors": errs,
           "errors_after_kill": errs_after_kill, "interval_s": a.interval,
           "request_timeout_s": a.request_timeout, "max_gap_s": round(max_gap, 3)}
    if not kill_at:
        out["error"] = "the harness never signalled the kill"
    elif first_ok_after is None:
        out["error"] = f"no acknowledged publish succeeded within {deadline - kill_at[0]:.0f}s of the kill"
    else:
        out["recovery_s"] = round(first_ok_after[1] - kill_at[0], 3)
        out["first_ok_sent_after_kill_s"] = round(first_ok_after[0] - kill_at[0], 3)
        out["complete"] = True
    return out
