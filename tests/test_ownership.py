"""Mailbox ownership across a three-node cluster: with users configured, a private mailbox
belongs to its creator; others may send to it, but SUB, LIST, INFO, DELETE and ACK of it
are refused (the permissions -ERR for SUB, code 403 for requests) unless CREATE named
them as readers. The owner is in the replicated record, so every node refuses the same."""

from __future__ import annotations

import json

import nats

from tests.mq9 import create, request, send
from tests.nodes import wait_for

USERS = """
[authorization]
[[authorization.users]]
user = "alice"
password = "a"
[[authorization.users]]
user = "bob"
password = "b"
[[authorization.users]]
user = "carol"
password = "c"
"""


async def as_user(node, user: str, errors: list | None = None):
    async def on_error(exc) -> None:
        if errors is not None:
            errors.append(str(exc).lower())
    return await nats.connect(f"nats://{user}:{user[0]}@127.0.0.1:{node.port}", error_cb=on_error)


async def test_private_mailboxes_belong_to_their_creator_on_every_node(make_cluster, tmp_path):
    config = tmp_path / "users.toml"
    config.write_text(USERS)
    n1, n2, n3 = make_cluster(3, extra=["--config", str(config)])
    bob_errors: list[str] = []
    alice, bob, carol = await as_user(n1, "alice"), await as_user(n2, "bob", bob_errors), await as_user(n3, "carol")
    try:
        box = (await create(alice, name="alice.inbox", ttl=600, readers=["carol"]))["mail_id"]
        info = await request(alice, f"$mq9.AI.MAILBOX.INFO.{box}")
        assert info["owner"] == "alice" and info["readers"] == ["carol"]
        sent = await send(bob, box, b"hello alice")  # anyone may send
        assert sent["mail_id"] == box

        async def refused_on_n2() -> bool:  # n2 has applied the create: it refuses bob
            reply = await request(bob, f"$mq9.AI.MAILBOX.LIST.{box}")
            return reply.get("code") == 403
        await wait_for(refused_on_n2, 10, "n2 to refuse bob's LIST")
        for subject in (f"$mq9.AI.MAILBOX.INFO.{box}", f"$mq9.AI.MAILBOX.DELETE.{box}.{sent['msg_id']}",
                        f"$mq9.AI.ACK.{sent['msg_id']}._.{box}"):
            reply = await request(bob, subject)
            assert reply["code"] == 403 and "another user" in reply["error"], (subject, reply)
        await bob.subscribe(f"$mq9.AI.MAILBOX.MSG.{box}.*")
        await bob.flush()
        await wait_for(lambda: any(f'subscription to "$mq9.ai.mailbox.msg.{box}.*"' in e for e in bob_errors), 5,
                       "bob's subscription to be refused with the permissions -ERR")
        assert bob.is_connected

        listed = await request(carol, f"$mq9.AI.MAILBOX.LIST.{box}")  # a reader, on a third node
        assert [m["msg_id"] for m in listed["messages"]] == [sent["msg_id"]]
        sub = await carol.subscribe(f"$mq9.AI.MAILBOX.MSG.{box}.*")
        got = await sub.next_msg(timeout=5)
        assert got.data == b"hello alice"
        await got.respond(b"")  # carol consumes it
        await wait_for(lambda: _empty(alice, box), 10, "carol's ack to consume the message everywhere")

        await bob.subscribe("$mq9.AI.MAILBOX.MSG.later.box.*")  # before it exists: allowed, for now
        await bob.flush()
        await create(alice, name="later.box", ttl=600)
        await send(alice, "later.box", b"for alice only")
        await wait_for(lambda: any('subscription to "$mq9.ai.mailbox.msg.later.box.*"' in e for e in bob_errors), 10,
                       "bob's early subscription to be removed once alice's mailbox exists")

        public = (await create(alice, name="alice.public", public=True, ttl=600))["mail_id"]

        async def bob_reads_public() -> bool:  # public: anyone reads (once n2 has applied the create)
            return "error" not in await request(bob, f"$mq9.AI.MAILBOX.INFO.{public}")
        await wait_for(bob_reads_public, 10, "bob to read alice's public mailbox")
    finally:
        for nc in (alice, bob, carol):
            await nc.close()


async def _empty(nc, box: str) -> bool:
    reply = await request(nc, f"$mq9.AI.MAILBOX.LIST.{box}")
    return reply.get("messages") == []


async def test_without_users_nothing_is_owned(node):
    nc = await nats.connect(node.url)
    other = await nats.connect(node.url)
    try:
        await create(nc, name="shared.box", ttl=60)
        info = await request(other, "$mq9.AI.MAILBOX.INFO.shared.box")
        assert "owner" not in info and info["mail_id"] == "shared.box"
        bad = await request(nc, "$mq9.AI.MAILBOX.CREATE", json.dumps({"name": "r.box", "readers": "carol"}).encode())
        assert bad["code"] == 400 and "readers" in bad["error"]
    finally:
        await nc.close()
        await other.close()
