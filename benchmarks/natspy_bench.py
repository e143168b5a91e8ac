"""nats-py workloads for benchmarks/core_nats.py, run as a process of their own.

    python benchmarks/natspy_bench.py pub    --url URL [--count N] [--size B]
    python benchmarks/natspy_bench.py fanout --url URL [--count N] [--size B] [--subs K]
    python benchmarks/natspy_bench.py reqrep --url URL [--count N] [--size B] [--concurrency C]
    ... [--sub-url URL2]   subscribers/responder on URL2 (another node of a cluster)

It runs in its own process so the client's event loop shares the CPU with nothing else
of the harness. Publisher and subscribers are separate connections in this one process
and event loop, so the figures are client-bound: that is what an agent written with
nats-py sees. The result is one JSON line on stdout, shaped like natsbench's
("rate" is the headline figure); on a deadline the run reports what it got with
"complete": false; a client error prints {"error": ...} and exits 1.

With --sub-url, the subscribers (or the responder) connect there and the publisher (or
requester) to --url; before the clock starts, the publisher sends requests on the subject
until one is answered (subscribers answer a request whose body is the probe and do not
count it; the responder echoes it), so the subscription has reached the publisher's
server and no measured message is lost on its way between nodes; pub/fanout then stop
waiting STALL_S after the last delivery once the publisher has flushed ("stalled": true),
as messages lost between servers would otherwise hold the run until its deadline.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import time
from importlib.metadata import version

import nats

SUBJECT = "bench.core.py"
PROBE = b"natspy-probe"
PROBE_WAIT_S = 15.0
STALL_S = 3.0  # --sub-url pub/fanout: stop waiting this long after the last delivery
errors: list[str] = []  # asynchronous client errors and the first failed requests


def client_name() -> str:
    return f"nats-py {version('nats-py')}"


async def connect(url: str, name: str):
    async def on_error(exc: Exception) -> None:  # keep nats-py from printing tracebacks
        errors.append(repr(exc))

    # allow_reconnect=False covers drops after connecting; the initial attempt still loops
    # over the server pool until max_reconnect_attempts (0 would mean forever), so bound it.
    try:
        return await asyncio.wait_for(nats.connect(
            url, name=name, connect_timeout=5, allow_reconnect=False, max_reconnect_attempts=1,
            reconnect_time_wait=0.2, error_cb=on_error,
        ), timeout=15)
    except Exception as exc:
        raise ConnectionError(f"cannot connect to {url}: {errors[-1] if errors else repr(exc)}") from exc


async def probe_interest(nc, payload: bytes, deadline: float) -> int:
    """Requests on SUBJECT from nc until one is answered: the subscribers' interest has
    reached nc's server (and nc's reply interest theirs). Returns the requests it took."""
    loop = asyncio.get_running_loop()
    until = min(deadline, loop.time() + PROBE_WAIT_S)
    tries = 0
    while True:
        tries += 1
        try:
            await nc.request(SUBJECT, payload, timeout=0.5)
            return tries
        except Exception as exc:  # no responders (at once) or a timeout
            if loop.time() > until:
                raise TimeoutError(f"no answer to the interest probe after {tries} requests "
                                   f"(subscription not propagated between servers?): {exc!r}") from exc
            await asyncio.sleep(0.02)


async def pubsub(args: argparse.Namespace, k: int) -> dict:
    """One publisher connection, k subscriber connections counting deliveries."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + args.timeout
    expected = args.count * k
    state = {"delivered": 0, "last": 0.0}
    done = asyncio.Event()

    async def on_msg(msg) -> None:
        state["delivered"] += 1
        state["last"] = time.perf_counter()
        if state["delivered"] >= expected:
            done.set()

    async def on_msg_or_probe(msg) -> None:
        if msg.reply and msg.data == PROBE:
            await msg.respond(b"ok")
            return
        await on_msg(msg)

    probing = args.sub_url is not None
    subs, conns = [], []
    for _ in range(k):
        nc = await connect(args.sub_url or args.url, "natspy-sub")
        conns.append(nc)
        # no client-side drops: the limits are far above what one run can hold
        subs.append(await nc.subscribe(SUBJECT, cb=on_msg_or_probe if probing else on_msg,
                                       pending_msgs_limit=expected + 1, pending_bytes_limit=1 << 34))
        await nc.flush(timeout=5)  # SUB is live on the server
    pub = await connect(args.url, "natspy-pub")
    conns.append(pub)
    probes = await probe_interest(pub, PROBE, deadline) if probing else 0

    payload = b"x" * args.size
    start = time.perf_counter()
    sent = 0
    while sent < args.count:
        if sent % 4096 == 0 and loop.time() > deadline:
            break
        await pub.publish(SUBJECT, payload)
        sent += 1
    flush_ok = True
    try:
        await pub.flush(timeout=max(0.001, deadline - loop.time()))
    except Exception:
        flush_ok = False
    pub_end = time.perf_counter()
    if sent < args.count:  # deadline hit while publishing: wait for what was sent
        expected = sent * k
        if state["delivered"] >= expected:
            done.set()
    stalled = False
    while not done.is_set() and loop.time() < deadline:
        try:
            await asyncio.wait_for(done.wait(), timeout=max(0.001, min(0.5, deadline - loop.time())))
        except asyncio.TimeoutError:
            # --sub-url: nothing for STALL_S since the flush or the last delivery: the rest were
            # lost between the servers; do not wait out the deadline
            if probing and time.perf_counter() - max(state["last"], pub_end) > STALL_S:
                stalled = True
                break
    got = state["delivered"]
    secs = (state["last"] - start) if got else (time.perf_counter() - start)
    for nc in conns:
        await nc.close()
    return {
        "mode": args.mode, "client": client_name(), "msgs": args.count, "size": args.size, "subs": k,
        "sent": sent, "expected": expected, "delivered": got, "seconds": round(secs, 6),
        "rate": round(got / secs, 1) if secs > 0 else 0.0,
        "pub_rate": round(sent / (pub_end - start), 1) if pub_end > start else 0.0, "probes": probes,
        "stalled": stalled, "flush_ok": flush_ok, "complete": sent == args.count and got == expected and flush_ok,
    }


async def reqrep(args: argparse.Namespace) -> dict:
    """One responder connection echoing; C concurrent sequential requesters on one connection."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + args.timeout
    resp = await connect(args.sub_url or args.url, "natspy-responder")

    async def on_request(msg) -> None:
        await msg.respond(msg.data)

    await resp.subscribe(SUBJECT, cb=on_request)
    await resp.flush(timeout=5)
    req = await connect(args.url, "natspy-requester")
    payload = b"x" * args.size
    # the responder echoes anything: the probe is an ordinary request, not counted
    probes = await probe_interest(req, payload, deadline) if args.sub_url is not None else 0
    counts = {"issued": 0, "completed": 0, "errors": 0}

    async def requester() -> None:
        while counts["issued"] < args.count and loop.time() < deadline:
            counts["issued"] += 1
            try:
                await req.request(SUBJECT, payload, timeout=min(5.0, max(0.001, deadline - loop.time())))
                counts["completed"] += 1
            except Exception as exc:
                counts["errors"] += 1
                if len(errors) < 5:
                    errors.append(repr(exc))

    start = time.perf_counter()
    await asyncio.gather(*(requester() for _ in range(args.concurrency)))
    secs = time.perf_counter() - start
    await req.close()
    await resp.close()
    done = counts["completed"]
    return {
        "mode": "reqrep", "client": client_name(), "msgs": args.count, "size": args.size,
        "workers": args.concurrency, "completed": done, "errors": counts["errors"],
        "seconds": round(secs, 6), "rate": round(done / secs, 1) if secs > 0 else 0.0,
        "mean_latency_us": round(secs * 1e6 * args.concurrency / done, 1) if done else 0.0, "probes": probes,
        "complete": done == args.count,
    }


async def main(args: argparse.Namespace) -> dict:
    if args.mode == "pub":
        result = await pubsub(args, 1)
    elif args.mode == "fanout":
        result = await pubsub(args, args.subs)
    else:
        result = await reqrep(args)
    if errors:
        result["client_errors"] = errors[:5]
    return result


def parse_args(argv: list[str]) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("mode", choices=["pub", "fanout", "reqrep"])
    p.add_argument("--url", default="nats://127.0.0.1:4222", help="publisher/requester connection")
    p.add_argument("--sub-url", default=None,
                   help="subscriber/responder connections (default --url); waits for interest to propagate")
    p.add_argument("--count", type=int, default=100_000, help="messages (pub, fanout) or requests (reqrep)")
    p.add_argument("--size", type=int, default=128, help="payload bytes")
    p.add_argument("--subs", type=int, default=10, help="subscriber connections (fanout)")
    p.add_argument("--concurrency", type=int, default=1, help="requests in flight (reqrep)")
    p.add_argument("--timeout", type=float, default=60.0, help="overall deadline in seconds")
    args = p.parse_args(argv)
    if args.count <= 0 or args.subs <= 0 or args.concurrency <= 0 or args.timeout <= 0:
        p.error("counts and the timeout must be positive")
    return args


if __name__ == "__main__":
    a = parse_args(sys.argv[1:])
    try:
        out = asyncio.run(asyncio.wait_for(main(a), timeout=a.timeout + 15))
    except Exception as exc:  # connection refused, handshake failure, overall timeout
        print(json.dumps({"mode": a.mode, "error": f"{type(exc).__name__}: {exc}"}), flush=True)
        sys.exit(1)
    print(json.dumps(out), flush=True)
