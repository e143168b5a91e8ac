"""nats-py workloads for benchmarks/mq9_bench.py, each run as a process of its own.

    python benchmarks/mq9_clients.py ackpub    --system mq9|js --urls U1,U2,.. --target NAME [--window W] ...
    python benchmarks/mq9_clients.py fanout    --system mq9|js --urls ... --target NAME [--subs K] ...
    python benchmarks/mq9_clients.py catchup   --system mq9|js --urls ... --target NAME --count N
    python benchmarks/mq9_clients.py workqueue --system mq9|js --urls ... --target NAME [--workers K] ...
    python benchmarks/mq9_clients.py failover  --system mq9|js --urls URL --target NAME

`--target` is the mq9 mailbox (created by the harness) or, for JetStream, the subject
inside the harness's stream (`bench.w2`, ...); for the JetStream work queue it is the
durable pull consumer's name on stream BENCHWQ (subject `benchwq.tasks`).

Connection i uses URL i mod the count; publishers and producers use the first URL. The
same client code path serves both systems: an mq9 acknowledged publish is a request to
`$mq9.AI.MAILBOX.MSG.{mail_id}.normal`, a JetStream one is `js.publish` (a request to
the stream's subject whose reply is the PubAck); both are awaited by W coroutines, each
sending its next request when its reply came.

Output: "#P done total" progress lines on stdout (about five a second), then one JSON
line with the figures ("rate" is the headline); "complete": false when the run hit its
deadline or saw errors (the figures then cover what was done); a client failure prints
{"error": ...} and exits 1. The failover workload reads "kill <monotonic time>" from
stdin: the moment the harness SIGKILLed the leader.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import time
from importlib.metadata import version

import nats
from nats.errors import TimeoutError as NatsTimeoutError

MQ9_MSG = "$mq9.AI.MAILBOX.MSG."
WQ_STREAM = "BENCHWQ"
WQ_SUBJECT = "benchwq.tasks"
errors: list[str] = []  # asynchronous client errors and the first failed requests


def client_name() -> str:
    return f"nats-py {version('nats-py')}"


def note(exc: object) -> None:
    if len(errors) < 5:
        errors.append(exc if isinstance(exc, str) else f"{type(exc).__name__}: {exc}")


class Progress:
    """Prints "#P done total" at most every 0.2 s."""

    def __init__(self, total: int) -> None:
        self.total = total
        self.last = 0.0

    def __call__(self, done: int, force: bool = False) -> None:
        now = time.monotonic()
        if force or now - self.last >= 0.2:
            self.last = now
            print(f"#P {done} {self.total}", flush=True)


async def connect(url: str, name: str):
    async def on_error(exc: Exception) -> None:  # keep nats-py from printing tracebacks
        note(exc)

    try:
        return await asyncio.wait_for(nats.connect(
            url, name=name, connect_timeout=5, allow_reconnect=False, max_reconnect_attempts=1,
            reconnect_time_wait=0.2, error_cb=on_error, pending_size=8 << 20,
        ), timeout=15)
    except Exception as exc:
        raise ConnectionError(f"cannot connect to {url}: {errors[-1] if errors else repr(exc)}") from exc


def percentiles(lat_s: list[float]) -> dict:
    if not lat_s:
        return {"p50_ms": None, "p90_ms": None, "p99_ms": None, "max_ms": None, "mean_ms": None}
    xs = sorted(lat_s)

    def pct(p: float) -> float:
        return round(xs[min(len(xs) - 1, int(p * (len(xs) - 1) + 0.5))] * 1e3, 3)

    return {"p50_ms": pct(0.5), "p90_ms": pct(0.9), "p99_ms": pct(0.99), "max_ms": round(xs[-1] * 1e3, 3),
            "mean_ms": round(sum(xs) / len(xs) * 1e3, 3)}


def mq9_subject(mail_id: str, word: str = "normal") -> str:
    return f"{MQ9_MSG}{mail_id}.{word}"


# ---- 1, 2, 8: acknowledged publishes with W in flight ---------------------------------


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
    nc = await connect(a.urls[0], "bench-ackpub")
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


# ---- 3: fan-out ------------------------------------------------------------------------


async def fanout(a: argparse.Namespace) -> dict:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + a.timeout
    k = a.subs
    expected = a.count * k
    state = {"delivered": 0, "last": 0.0}
    done = asyncio.Event()
    progress = Progress(expected)

    async def on_msg(msg) -> None:
        state["delivered"] += 1
        state["last"] = time.perf_counter()
        if state["delivered"] >= expected:
            done.set()
        progress(state["delivered"])

    conns = []
    try:
        for i in range(k):
            nc = await connect(a.urls[i % len(a.urls)], f"bench-fan-sub{i}")
            conns.append(nc)
            if a.system == "mq9":
                await nc.subscribe(f"{MQ9_MSG}{a.target}.*", cb=on_msg, pending_msgs_limit=expected + 1,
                                   pending_bytes_limit=1 << 34)
            else:
                js = nc.jetstream()
                await js.subscribe(a.target, cb=on_msg, ordered_consumer=True, pending_msgs_limit=expected + 1,
                                   pending_bytes_limit=1 << 34)
            await nc.flush(timeout=5)
        pub = await connect(a.urls[0], "bench-fan-pub")
        conns.append(pub)
        subject = mq9_subject(a.target) if a.system == "mq9" else a.target
        payload = b"x" * a.size
        start = time.perf_counter()
        sent = 0
        while sent < a.count:
            if sent % 1024 == 0:
                if loop.time() > deadline:
                    break
                await asyncio.sleep(0)  # let subscribers run while publishing
            await pub.publish(subject, payload)
            sent += 1
        flush_ok = True
        try:
            await pub.flush(timeout=max(0.001, deadline - loop.time()))  # mq9: every message stored
        except Exception as exc:
            flush_ok = False
            note(exc)
        if sent < a.count:
            expected = sent * k
            if state["delivered"] >= expected:
                done.set()
        try:
            await asyncio.wait_for(done.wait(), timeout=max(0.001, deadline - loop.time()))
        except asyncio.TimeoutError:
            pass
        got = state["delivered"]
        secs = (state["last"] - start) if got else (time.perf_counter() - start)
    finally:
        for nc in conns:
            try:
                await asyncio.wait_for(nc.close(), 5)
            except Exception:
                pass
    progress(got, force=True)
    return {"workload": "fanout", "system": a.system, "client": client_name(), "msgs": a.count, "size": a.size,
            "subs": k, "sent": sent, "expected": expected, "delivered": got, "seconds": round(secs, 6),
            "rate": round(got / secs, 1) if secs > 0 else 0.0, "flush_ok": flush_ok,
            "complete": sent == a.count and got == expected and flush_ok}


# ---- 4: catch-up -----------------------------------------------------------------------


async def catchup(a: argparse.Namespace) -> dict:
    """A new subscriber reads a pre-filled mailbox / stream (the harness filled it)."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + a.timeout
    state = {"got": 0, "last": 0.0, "levels": {}}
    done = asyncio.Event()
    progress = Progress(a.count)

    async def on_msg(msg) -> None:
        state["got"] += 1
        state["last"] = time.perf_counter()
        word = msg.subject.rpartition(".")[2]
        state["levels"][word] = state["levels"].get(word, 0) + 1
        if state["got"] >= a.count:
            done.set()
        progress(state["got"])

    nc = await connect(a.urls[-1], "bench-catchup")
    try:
        start = time.perf_counter()
        if a.system == "mq9":
            await nc.subscribe(f"{MQ9_MSG}{a.target}.*", cb=on_msg, pending_msgs_limit=a.count + 1,
                               pending_bytes_limit=1 << 34)
        else:
            js = nc.jetstream()
            await js.subscribe(a.target, cb=on_msg, ordered_consumer=True, pending_msgs_limit=a.count + 1,
                               pending_bytes_limit=1 << 34)
        try:
            await asyncio.wait_for(done.wait(), timeout=max(0.001, deadline - loop.time()))
        except asyncio.TimeoutError:
            pass
        got = state["got"]
        secs = (state["last"] - start) if got else (time.perf_counter() - start)
    finally:
        try:
            await asyncio.wait_for(nc.close(), 5)
        except Exception:
            pass
    progress(got, force=True)
    return {"workload": "catchup", "system": a.system, "client": client_name(), "msgs": a.count,
            "delivered": got, "by_subject_token": state["levels"], "seconds": round(secs, 6),
            "rate": round(got / secs, 1) if secs > 0 else 0.0, "complete": got == a.count}


# ---- 5: work queue ---------------------------------------------------------------------


async def workqueue(a: argparse.Namespace) -> dict:
    """K workers ack tasks while one producer publishes them; rate up to the workers' final flush.

    Each task carries its number ("t<i>;xxx..."), so a redelivered task counts once.
    """
    loop = asyncio.get_running_loop()
    deadline = loop.time() + a.timeout
    seen = bytearray(a.count)
    state = {"distinct": 0, "redelivered": 0, "fetch_errors": 0}
    all_done = asyncio.Event()
    stop = asyncio.Event()
    progress = Progress(a.count)

    def mark(data: bytes) -> None:
        try:
            i = int(data[1:data.index(b";")])
        except ValueError:
            return
        if 0 <= i < a.count:
            if seen[i]:
                state["redelivered"] += 1
            else:
                seen[i] = 1
                state["distinct"] += 1
                if state["distinct"] >= a.count:
                    all_done.set()
        progress(state["distinct"])

    conns, tasks = [], []
    try:
        for i in range(a.workers):
            nc = await connect(a.urls[i % len(a.urls)], f"bench-worker{i}")
            conns.append(nc)
            if a.system == "mq9":
                async def on_task(msg) -> None:
                    await msg.ack()
                    mark(msg.data)

                await nc.subscribe(f"{MQ9_MSG}{a.target}.*", queue="workers", cb=on_task,
                                   pending_msgs_limit=a.count + 1, pending_bytes_limit=1 << 34)
            else:
                js = nc.jetstream()
                psub = await js.pull_subscribe_bind(durable=a.target, stream=WQ_STREAM)

                async def fetcher(psub=psub) -> None:
                    while not stop.is_set() and loop.time() < deadline:
                        try:
                            msgs = await psub.fetch(a.batch, timeout=0.5)
                        except (NatsTimeoutError, asyncio.TimeoutError):
                            continue
                        except Exception as exc:
                            state["fetch_errors"] += 1
                            note(exc)
                            await asyncio.sleep(0.01)
                            continue
                        for m in msgs:
                            await m.ack()
                            mark(m.data)

                tasks.append(asyncio.create_task(fetcher()))
            await nc.flush(timeout=5)
        prod = await connect(a.urls[0], "bench-producer")
        conns.append(prod)
        subject = mq9_subject(a.target) if a.system == "mq9" else WQ_SUBJECT
        filler = b"x" * a.size
        start = time.perf_counter()
        sent = 0
        while sent < a.count:
            if sent % 512 == 0:
                if loop.time() > deadline:
                    break
                await asyncio.sleep(0)
            head = b"t%d;" % sent
            await prod.publish(subject, head + filler[len(head):])
            sent += 1
        flush_ok = True
        try:
            await prod.flush(timeout=max(0.001, deadline - loop.time()))
        except Exception as exc:
            flush_ok = False
            note(exc)
        try:
            await asyncio.wait_for(all_done.wait(), timeout=max(0.001, deadline - loop.time()))
        except asyncio.TimeoutError:
            pass
        stop.set()
        acks_flushed = True
        for nc in conns[:a.workers]:  # the acks are on the wire (mq9: committed) once this returns
            try:
                await nc.flush(timeout=max(1.0, deadline - loop.time()))
            except Exception as exc:
                acks_flushed = False
                note(exc)
        secs = time.perf_counter() - start
    finally:
        stop.set()
        for t in tasks:
            t.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        for nc in conns:
            try:
                await asyncio.wait_for(nc.close(), 5)
            except Exception:
                pass
    got = state["distinct"]
    progress(got, force=True)
    return {"workload": "workqueue", "system": a.system, "client": client_name(), "msgs": a.count,
            "size": a.size, "workers": a.workers, "sent": sent, "distinct": got,
            "redelivered": state["redelivered"], "fetch_errors": state["fetch_errors"], "seconds": round(secs, 6),
            "rate": round(got / secs, 1) if secs > 0 else 0.0, "flush_ok": flush_ok, "acks_flushed": acks_flushed,
            "complete": sent == a.count and got == a.count and flush_ok and acks_flushed}


# ---- 6: failover -----------------------------------------------------------------------


async def failover(a: argparse.Namespace) -> dict:
    """One acknowledged publish at a time, every `interval`; the harness kills the leader.

    Reports the time from the kill to the first successful acknowledged publish answered
    after it, the longest gap between two successes, and the errors in between.
    """
    loop = asyncio.get_running_loop()
    deadline = loop.time() + a.timeout
    nc = await connect(a.urls[0], "bench-failover")
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
        try:
            await asyncio.wait_for(nc.close(), 5)
        except Exception:
            pass
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


# ---- main ------------------------------------------------------------------------------


async def main(a: argparse.Namespace) -> dict:
    fn = {"ackpub": ackpub, "fanout": fanout, "catchup": catchup, "workqueue": workqueue,
          "failover": failover}[a.workload]
    result = await fn(a)
    if errors:
        result["client_errors"] = errors[:5]
    return result


def parse_args(argv: list[str]) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("workload", choices=["ackpub", "fanout", "catchup", "workqueue", "failover"])
    p.add_argument("--system", choices=["mq9", "js"], required=True)
    p.add_argument("--urls", required=True, help="comma-separated server URLs")
    p.add_argument("--target", required=True, help="mailbox name, JetStream subject or durable consumer")
    p.add_argument("--count", type=int, default=10_000)
    p.add_argument("--size", type=int, default=128, help="payload bytes")
    p.add_argument("--window", type=int, default=1, help="requests in flight (ackpub)")
    p.add_argument("--subs", type=int, default=10, help="subscriber connections (fanout)")
    p.add_argument("--workers", type=int, default=4, help="workers (workqueue)")
    p.add_argument("--batch", type=int, default=64, help="fetch batch (JetStream workqueue)")
    p.add_argument("--duration", type=float, default=1e9, help="stop issuing requests after this (ackpub)")
    p.add_argument("--interval", type=float, default=0.01, help="pause between publishes (failover)")
    p.add_argument("--after", type=float, default=0.5, help="keep publishing this long after recovery (failover)")
    p.add_argument("--request-timeout", type=float, default=5.0)
    p.add_argument("--timeout", type=float, default=60.0, help="overall deadline in seconds")
    a = p.parse_args(argv)
    a.urls = [u for u in a.urls.split(",") if u]
    if not a.urls or a.count <= 0 or a.window <= 0 or a.subs <= 0 or a.workers <= 0 or a.timeout <= 0:
        p.error("urls, counts and the timeout must be given and positive")
    return a


if __name__ == "__main__":
    args = parse_args(sys.argv[1:])
    try:
        out = asyncio.run(asyncio.wait_for(main(args), timeout=args.timeout + 20))
    except Exception as exc:  # connection refused, handshake failure, overall timeout
        print(json.dumps({"workload": args.workload, "error": f"{type(exc).__name__}: {exc}",
                          "client_errors": errors[:5]}), flush=True)
        sys.exit(1)
    print(json.dumps(out), flush=True)
