"""The cluster's own ports refuse strangers, and routes bind only the host they are given
(contract section 9). Checked with `ss` on real nodes and with raw sockets. (The Raft
port still binds every interface: see cluster/raft.py wait_bindable.)"""

from __future__ import annotations

import asyncio
import shutil
import socket
import subprocess

import pytest

from tests.mq9 import connect, create, send
from tests.nodes import wait_for


def listening(port: int) -> list[str]:
    out = subprocess.run(["ss", "-ltnH", f"sport = :{port}"], capture_output=True, text=True).stdout
    return [line.split()[3] for line in out.splitlines() if line.strip()]


def stranger(port: int, junk: bytes, timeout: float = 10.0) -> bytes:
    """Connect, send junk, return what came back before the node closed the connection."""
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as s:
        s.sendall(junk)
        got = b""
        while True:
            try:
                chunk = s.recv(4096)
            except ConnectionResetError:
                break
            if not chunk:
                break
            got += chunk
        return got


@pytest.mark.skipif(not shutil.which("ss"), reason="ss (iproute2) is not installed")
async def test_routes_bind_their_host_and_cluster_ports_refuse_strangers(make_cluster):
    nodes = make_cluster(3, extra=["--cluster-secret", "port-test-secret"])
    for node in nodes:
        route = node.port + 1000
        assert listening(route) == [f"127.0.0.1:{route}"], listening(route)
    nc = await connect(nodes[0])
    try:
        await create(nc, name="ports.box", ttl=60)
        huge = (300 << 20).to_bytes(4, "little") + b"x" * 1024  # announces 300 MiB: cut off at once
        assert await asyncio.to_thread(stranger, nodes[1].port + 2000, huge) == b""
        forged = (64).to_bytes(4, "little") + b"not encrypted with the cluster secret".ljust(64, b".")
        assert await asyncio.to_thread(stranger, nodes[1].port + 2000, forged) == b""
        route_reply = await asyncio.to_thread(stranger, nodes[1].port + 1000, b"CONNECT {}\r\n")
        assert b"-ERR 'attempted to connect to route port'" in route_reply, route_reply

        async def still_serving() -> bool:
            return (await send(nc, "ports.box", b"after the strangers"))["mail_id"] == "ports.box"
        await wait_for(still_serving, 15, "the cluster to keep committing writes")
        for node in nodes:
            assert node.alive()
    finally:
        await nc.close()
