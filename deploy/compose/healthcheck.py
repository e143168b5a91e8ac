#!/usr/bin/env python3
"""Container health check: the node's /healthz, or `$mq9.AI.NODE.STATUS` without a monitor port.

With `MQ9_MONITOR` set (compose sets 0.0.0.0:8222), healthy means GET /healthz on that port
answers 200: the node applies the log and reaches a leader with a majority; a node cut off
from the majority turns unhealthy within a few seconds. Without it, the check speaks the
NATS protocol over a plain socket and healthy means the node serves clients (a node cut
off from its peers still answers reads). Standard library only, so a check costs about
30 ms of CPU every interval.

Exit 0 with one line such as `n1 follower leader=n2 applied=1234 quorum=True` (or
`healthz: {"status": "ok"}`), exit 1 with the reason when unhealthy.

usage: mq9-healthcheck [HOST:PORT]   (default 127.0.0.1 and the port of MQ9_LISTEN)
"""

from __future__ import annotations

import http.client
import json
import os
import socket
import sys
import time

TIMEOUT_S = 2.5


def target() -> tuple[str, int]:
    if len(sys.argv) > 1:
        host, _, port = sys.argv[1].rpartition(":")
        return host or "127.0.0.1", int(port)
    listen = os.environ.get("MQ9_LISTEN", "127.0.0.1:4222")
    _, _, port = listen.rpartition(":")
    return "127.0.0.1", int(port or 4222)


def node_status(host: str, port: int) -> dict:
    deadline = time.monotonic() + TIMEOUT_S
    with socket.create_connection((host, port), timeout=TIMEOUT_S) as sock:
        buf = b""

        def read_line() -> bytes:
            nonlocal buf
            while b"\r\n" not in buf:
                sock.settimeout(max(0.05, deadline - time.monotonic()))
                chunk = sock.recv(65536)
                if not chunk:
                    raise ConnectionError("connection closed by the node")
                buf += chunk
            line, _, buf = buf.partition(b"\r\n")
            return line

        def read_exact(n: int) -> bytes:
            nonlocal buf
            while len(buf) < n:
                sock.settimeout(max(0.05, deadline - time.monotonic()))
                chunk = sock.recv(65536)
                if not chunk:
                    raise ConnectionError("connection closed by the node")
                buf += chunk
            data, buf = buf[:n], buf[n:]
            return data

        if not read_line().startswith(b"INFO "):
            raise ConnectionError("no INFO from the node")
        connect = {"verbose": False, "pedantic": False, "headers": False, "name": "mq9-healthcheck", "lang": "python"}
        sock.sendall(b"CONNECT " + json.dumps(connect).encode() + b"\r\n"
                     b"SUB _MQ9_HEALTH.status 1\r\n"
                     b"PUB $mq9.AI.NODE.STATUS _MQ9_HEALTH.status 0\r\n\r\n")
        while True:
            line = read_line()
            if line.startswith(b"MSG "):
                size = int(line.split()[-1])
                body = read_exact(size + 2)[:size]
                return json.loads(body)
            if line == b"PING":
                sock.sendall(b"PONG\r\n")
            elif line.startswith(b"-ERR"):
                raise ConnectionError(line.decode(errors="replace"))


def healthz(monitor: str) -> int:
    _, _, port = monitor.rpartition(":")
    try:
        conn = http.client.HTTPConnection("127.0.0.1", int(port or monitor), timeout=TIMEOUT_S)
        conn.request("GET", "/healthz")
        response = conn.getresponse()
        body = response.read().decode(errors="replace").strip().replace("\n", "")
    except Exception as exc:
        print(f"unhealthy: /healthz on port {port or monitor}: {exc or type(exc).__name__}")
        return 1
    print(f"healthz {response.status}: {body}")
    return 0 if response.status == 200 else 1


def main() -> int:
    monitor = os.environ.get("MQ9_MONITOR", "")
    if monitor and len(sys.argv) == 1:
        return healthz(monitor)
    host, port = target()
    try:
        st = node_status(host, port)
    except Exception as exc:  # any failure is "unhealthy"; the reason goes to `docker inspect`
        print(f"unhealthy: {host}:{port}: {exc or type(exc).__name__}")
        return 1
    print(f"{st.get('name')} {st.get('state')} leader={st.get('leader_name') or st.get('leader')} "
          f"applied={st.get('applied_index')} quorum={st.get('has_quorum')}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
