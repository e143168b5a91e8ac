"""Identities, permissions, limits and reload against real nodes, with nats-py and raw sockets.

Every method nats-server has is accepted with the right credentials and refused with
wrong ones in nats-server's words: a token, a user with a plain or a bcrypt password, an
nkey user signing INFO's nonce. Permissions with wildcards, allow and deny, on publish
and subscribe (the connection stays open), replies to a request always allowed,
`max_connections`, `max_subscriptions`, a client that never sends CONNECT, SIGHUP reload
(a removed user is cut off), and the `mq9` CLI's credential options.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import socket
import subprocess
import sys

import bcrypt
import nats
import nkeys
import pytest

from tests.mq9 import create, request, send
from tests.nodes import REPO, wait_for


def raw_session(port: int, lines: list[bytes], timeout: float = 5.0) -> tuple[dict, bytes]:
    """Connect with a plain socket, read INFO, send `lines`, read until the node closes or times out."""
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as s:
        buf = b""
        while b"\r\n" not in buf:
            buf += s.recv(4096)
        info_line, _, rest = buf.partition(b"\r\n")
        info = json.loads(info_line[5:])
        for line in lines:
            s.sendall(line)
        out = rest
        try:
            while True:
                chunk = s.recv(4096)
                if not chunk:
                    break
                out += chunk
        except (socket.timeout, ConnectionResetError):  # a close with our bytes unread is a reset
            pass
    return info, out


def node_lines(node) -> str:
    """What the node itself logged (not the harness's `---- start <command line>` lines)."""
    return "\n".join(line for line in node.log_path.read_text().splitlines() if not line.startswith("---- start"))


def write_config(path, text: str) -> str:
    path.write_text(text)
    return str(path)


async def refused(url: str, **kw) -> str:
    errors: list[str] = []

    async def on_error(exc) -> None:
        errors.append(str(exc))
    with pytest.raises(Exception) as info:
        nc = await nats.connect(url, connect_timeout=3, max_reconnect_attempts=0, allow_reconnect=False,
                                error_cb=on_error, **kw)
        await nc.close()
    return " ".join(errors) + " " + str(info.value)


async def test_token_accepted_refused_and_required_first(make_node):
    node = make_node("tok", extra=["--auth", "s3cret-token"]).start()
    nc = await nats.connect(node.url, token="s3cret-token")
    try:
        assert (await create(nc, name="tok.box", ttl=60))["mail_id"] == "tok.box"
    finally:
        await nc.close()
    assert "authorization violation" in (await refused(node.url, token="wrong")).lower()
    assert "authorization violation" in (await refused(node.url)).lower()
    info, out = await asyncio.to_thread(raw_session, node.port, [b"PING\r\n"])
    assert info["auth_required"] is True and "nonce" not in info
    assert out.startswith(b"-ERR 'Authorization Violation'\r\n")
    info, out = await asyncio.to_thread(raw_session, node.port, [], 6.0)  # never sends CONNECT
    assert out == b"-ERR 'Authentication Timeout'\r\n"
    assert "s3cret-token" not in node_lines(node)


async def test_users_with_plain_and_bcrypt_passwords_from_the_config_file(make_node, tmp_path):
    hashed = bcrypt.hashpw(b"alice-pw", bcrypt.gensalt(rounds=4)).decode()
    config = write_config(tmp_path / "users.toml", f"""
[authorization]
[[authorization.users]]
user = "alice"
password = "{hashed}"
[[authorization.users]]
user = "bob"
password = "bob-pw"
""")
    node = make_node("users", extra=["--config", config]).start()
    for user, password in (("alice", "alice-pw"), ("bob", "bob-pw")):
        nc = await nats.connect(node.url.replace("nats://", f"nats://{user}:{password}@"))
        try:
            await create(nc, name=f"{user}.box", ttl=60)
        finally:
            await nc.close()
    assert "authorization violation" in (await refused(node.url, user="alice", password="bob-pw")).lower()
    assert "authorization violation" in (await refused(node.url, user="carol", password="x")).lower()
    log = node_lines(node)
    assert "Authorization Violation (carol)" in log and "bob-pw" not in log and hashed not in log


async def test_nkey_user_signs_the_nonce(make_node, tmp_path):
    seed = nkeys.encode_seed(os.urandom(32), nkeys.PREFIX_BYTE_USER)
    public = nkeys.from_seed(seed).public_key.decode()
    other = nkeys.encode_seed(os.urandom(32), nkeys.PREFIX_BYTE_USER)
    config = write_config(tmp_path / "nkey.toml", f'[authorization]\n[[authorization.users]]\nnkey = "{public}"\n')
    (tmp_path / "user.nk").write_bytes(seed)
    (tmp_path / "other.nk").write_bytes(other)
    node = make_node("nk", extra=["--config", config]).start()
    info, _ = await asyncio.to_thread(raw_session, node.port, [], 0.3)
    assert info["auth_required"] is True and len(info["nonce"]) >= 11
    nc = await nats.connect(node.url, nkeys_seed=str(tmp_path / "user.nk"))
    try:
        await create(nc, name="nk.box", ttl=60)
    finally:
        await nc.close()
    assert "authorization violation" in (await refused(node.url, nkeys_seed=str(tmp_path / "other.nk"))).lower()


PERMS = """
[authorization]
[[authorization.users]]
user = "alice"
password = "a"
permissions.publish = { allow = ["$mq9.AI.>", "_INBOX.>", "events.>"], deny = ["events.secret"] }
permissions.subscribe = { allow = [">"], deny = ["secret.>"] }
[[authorization.users]]
user = "svc"
password = "s"
permissions.publish = { allow = ["svc.status"] }
permissions.subscribe = { allow = ["svc.>", "_INBOX.>"] }
[[authorization.users]]
user = "root"
password = "r"
"""


async def test_publish_and_subscribe_permissions_keep_the_connection_open(make_node, tmp_path):
    node = make_node("perm", extra=["--config", write_config(tmp_path / "perm.toml", PERMS)]).start()
    errors: list[str] = []

    async def on_error(exc) -> None:
        errors.append(str(exc))
    alice = await nats.connect(f"nats://alice:a@127.0.0.1:{node.port}", error_cb=on_error)
    svc = await nats.connect(f"nats://svc:s@127.0.0.1:{node.port}")
    root = await nats.connect(f"nats://root:r@127.0.0.1:{node.port}")
    try:
        await create(alice, name="alice.box", ttl=60)  # mq9 requests are subjects like any other
        await alice.publish("other.subject", b"x")
        await alice.publish("events.secret", b"x")
        await alice.subscribe("secret.plans")
        await alice.flush()
        await wait_for(lambda: len(errors) >= 3, 5, "three permission errors")
        said = [e.lower() for e in errors]  # nats-py lowercases -ERR texts; the raw words are checked below
        assert any('permissions violation for publish to "other.subject"' in e for e in said)
        assert any('permissions violation for publish to "events.secret"' in e for e in said)
        assert any('permissions violation for subscription to "secret.plans"' in e for e in said)
        assert alice.is_connected  # non-fatal, as nats-server

        _, raw = await asyncio.to_thread(raw_session, node.port, [
            b'CONNECT {"user":"alice","pass":"a","verbose":false}\r\nPUB other.subject 1\r\nx\r\n'
            b'SUB secret.x 1\r\nPING\r\n'], 1.0)
        assert raw == (b"-ERR 'Permissions Violation for Publish to \"other.subject\"'\r\n"
                       b"-ERR 'Permissions Violation for Subscription to \"secret.x\"'\r\nPONG\r\n")

        everything = await alice.subscribe(">")  # allowed; the denied part is filtered at delivery
        await alice.flush()
        await root.publish("secret.plans", b"hidden")
        await root.publish("public.news", b"shown")
        await root.flush()
        got = await everything.next_msg(timeout=5)
        assert (got.subject, got.data) == ("public.news", b"shown")

        async def answer(msg) -> None:  # svc may publish only svc.status, but may answer a request
            await msg.respond(b"pong")
        await svc.subscribe("svc.ping", cb=answer)
        await svc.flush()
        reply = await root.request("svc.ping", b"", timeout=5)
        assert reply.data == b"pong"
        await svc.publish("svc.elsewhere", b"x")
        await svc.flush()
        assert svc.is_connected
    finally:
        for nc in (alice, svc, root):
            await nc.close()


async def test_connection_and_subscription_limits(make_node):
    node = make_node("lim", extra=["--max-connections", "2", "--max-subscriptions", "2"]).start()
    first, second = await nats.connect(node.url), await nats.connect(node.url)
    try:
        info, out = await asyncio.to_thread(raw_session, node.port, [b"CONNECT {}\r\n"])
        assert out.startswith(b"-ERR 'maximum connections exceeded'")
        await second.close()
        await wait_for(lambda: "maximum connections (2) exceeded" in node_lines(node), 5, "the refusal in the log")

        async def third_subscription_refused() -> bool:  # once the node has seen `second` go
            _, out = await asyncio.to_thread(raw_session, node.port, [
                b'CONNECT {"verbose":false}\r\nSUB a 1\r\nSUB b 2\r\nSUB c 3\r\nPING\r\n'], 1.0)
            assert not out.startswith(b"-ERR 'maximum connections"), out
            return out == b"-ERR 'Maximum Subscriptions Exceeded'\r\nPONG\r\n"  # refused, connection kept
        await wait_for(third_subscription_refused, 10, "a third subscription to be refused, the connection kept")
    finally:
        await first.close()


async def test_reload_removes_a_user_and_changes_permissions(make_node, tmp_path):
    path = tmp_path / "reload.toml"
    write_config(path, PERMS)
    node = make_node("rel", extra=["--config", str(path)]).start()
    closed: list[str] = []

    async def on_error(exc) -> None:
        closed.append(str(exc))
    svc = await nats.connect(f"nats://svc:s@127.0.0.1:{node.port}", error_cb=on_error, allow_reconnect=False)
    alice_errors: list[str] = []

    async def alice_error(exc) -> None:
        alice_errors.append(str(exc))
    alice = await nats.connect(f"nats://alice:a@127.0.0.1:{node.port}", error_cb=alice_error)
    try:
        await alice.publish("events.ok", b"x")
        await alice.flush()
        assert not alice_errors
        write_config(path, PERMS.replace('"events.>"', '"other.>"').split("[[authorization.users]]\nuser = \"svc\"")[0]
                     + '[[authorization.users]]\nuser = "root"\npassword = "r"\n')
        subprocess.run([sys.executable, "-m", "node.cli", "reload", "--pid", str(node.proc.pid)], check=True,
                       cwd=REPO, timeout=30)
        await wait_for(lambda: svc.is_closed or any("authorization violation" in e.lower() for e in closed), 10,
                       "the removed user's connection to be closed")
        await alice.publish("events.ok", b"x")
        await alice.flush()
        await wait_for(lambda: any('publish to "events.ok"' in e.lower() for e in alice_errors), 5,
                       "alice's changed permissions to apply to her open connection")
        assert "Reloaded" in node.log_path.read_text()
        path.write_text("[authorization\nbroken")  # a broken file changes nothing
        node.proc.send_signal(signal.SIGHUP)
        await wait_for(lambda: "Reload refused" in node.log_path.read_text(), 10, "the refusal to be logged")
        assert alice.is_connected
        await create(alice, name="still.works", ttl=60)
    finally:
        await alice.close()
        await svc.close()


def test_cli_takes_credentials_and_fails_in_one_line(make_node):
    node = make_node("cli", extra=["--auth", "tok-123"]).start()

    def mq9(*args: str) -> subprocess.CompletedProcess:
        return subprocess.run([sys.executable, "-m", "node.cli", *args, "--server", node.url], capture_output=True,
                              text=True, timeout=30, cwd=REPO)
    ok = mq9("create", "--name", "cli.box", "--token", "tok-123")
    assert ok.returncode == 0, ok.stderr
    env_ok = subprocess.run([sys.executable, "-m", "node.cli", "send", "cli.box", "hi", "--server", node.url],
                            capture_output=True, text=True, timeout=30, cwd=REPO, env=dict(os.environ, NATS_TOKEN="tok-123"))
    assert env_ok.returncode == 0, env_ok.stderr
    bad = mq9("list", "cli.box")
    assert bad.returncode == 1 and "Traceback" not in bad.stderr
    assert "authorization violation" in bad.stderr.lower() and len(bad.stderr.strip().splitlines()) == 1


async def test_a_bad_config_file_stops_the_node_with_one_line(tmp_path):
    bad = write_config(tmp_path / "bad.toml", '[authorization]\n[[authorization.users]]\nuser = "x"\n')
    out = await asyncio.to_thread(subprocess.run, [sys.executable, "-m", "node.cli", "serve", "--config", bad,
                                                   "--data", str(tmp_path / "d")],
                                  capture_output=True, text=True, timeout=30, cwd=REPO)
    assert out.returncode == 2 and "has no password" in out.stderr and "Traceback" not in out.stderr


async def test_auth_off_keeps_everything_open(node):
    nc = await nats.connect(node.url)
    try:
        info = nc._server_info
        assert "auth_required" not in info and "nonce" not in info
        await create(nc, name="open.box", ttl=60)
        assert (await send(nc, "open.box", b"x"))["mail_id"] == "open.box"
        assert "error" not in await request(nc, "$mq9.AI.MAILBOX.INFO.open.box")
    finally:
        await nc.close()


async def served(url: str, **kw) -> bool:
    """Does the node answer a request on such a connection? (With TLS 1.3 a missing client
    certificate may be refused only after the client thinks the handshake is done.)"""
    try:
        nc = await nats.connect(url, connect_timeout=3, max_reconnect_attempts=0, allow_reconnect=False, **kw)
    except Exception:
        return False
    try:
        await nc.request("$mq9.AI.MAILBOX.CREATE", b'{"name": "should.not.exist", "ttl": 60}', timeout=3)
        return True
    except Exception:
        return False
    finally:
        await nc.close()


def _client_tls(certs: dict, with_cert: bool):
    import ssl

    context = ssl.create_default_context(cafile=certs["ca.pem"])
    if with_cert:
        context.load_cert_chain(certs["client.pem"], certs["client-key.pem"])
    return context


async def test_tls_with_and_without_client_certificates(make_node, tmp_path):
    from node.cli.certs import make

    certs = make(str(tmp_path / "certs"), ["localhost", "127.0.0.1"])
    plain_tls = make_node("tls1", extra=["--tls-cert", certs["server.pem"], "--tls-key", certs["server-key.pem"]]).start()
    nc = await nats.connect(f"tls://127.0.0.1:{plain_tls.port}", tls=_client_tls(certs, False), tls_hostname="localhost")
    try:
        assert nc._server_info["tls_required"] is True
        await create(nc, name="tls.box", ttl=60)
    finally:
        await nc.close()
    info, out = await asyncio.to_thread(raw_session, plain_tls.port, [b"CONNECT {}\r\nPING\r\n"], 3.0)
    assert info["tls_required"] is True and b"PONG" not in out  # a plain client gets nothing served
    assert b"-ERR 'Secure Connection - TLS Required'" in out or out == b""

    verified = make_node("tls2", extra=["--tls-cert", certs["server.pem"], "--tls-key", certs["server-key.pem"],
                                        "--tls-ca", certs["ca.pem"], "--tls-verify"]).start()
    nc = await nats.connect(f"tls://127.0.0.1:{verified.port}", tls=_client_tls(certs, True), tls_hostname="localhost")
    try:
        await create(nc, name="mtls.box", ttl=60)
    finally:
        await nc.close()
    assert not await served(f"tls://127.0.0.1:{verified.port}", tls=_client_tls(certs, False), tls_hostname="localhost")
    cli = await asyncio.to_thread(subprocess.run, [sys.executable, "-m", "node.cli", "info", "mtls.box", "--server",
                                                   f"tls://localhost:{verified.port}", "--tls-ca", certs["ca.pem"],
                                                   "--tls-cert", certs["client.pem"], "--tls-key", certs["client-key.pem"]],
                                  capture_output=True, text=True, timeout=30, cwd=REPO)
    assert cli.returncode == 0 and "mtls.box" in cli.stdout, cli.stderr
