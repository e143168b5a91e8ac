"""The `$mq9.AI.*` API: decode and validate, build a command, await its result, reply.

Writes (create, store, ack, delete) become commands for the replicator; the reply is
sent only after the command's batch is committed and applied here, and the client's
PONG is held until then too (`begin_write` / `end_write`), so `flush()` means stored.
Reads (LIST, INFO, PUBLIC.LIST) are answered from this node's RocksDB once it has
applied everything committed before the read arrived (barrier.py), so they see every
acknowledged write, whichever node took it.

Every failure a client can cause is a JSON reply `{"error": ..., "code": ...}` when
the request has a reply subject; without one (a plain publish), it is logged and
counted, and nothing is stored. Subscriptions that would read across mailboxes are
refused with nats-server's permissions `-ERR`, which keeps the connection open.
"""

from __future__ import annotations

import logging
import os
from typing import TYPE_CHECKING

import msgspec

from cluster import commands as c
from cluster import keys, records
from cluster.effects import Created, Failure, Result, Stored
from cluster.replicator import Replicator
from node.nats import errors
from node.mq9 import ownership
from node.mq9.barrier import ReadBarrier
from node.mq9 import subjects as subj
from node.mq9.delivery import Delivery
from node.nats.ops import Pub
from node.nats.subjects import Subscription
from node.nats.wire import header_value

if TYPE_CHECKING:
    from node.config import Settings
    from node.nats.connection import ClientConnection
    from node.nats.server import Server

log = logging.getLogger("mq9.api")

LIST_MAX_ENTRIES = 10_000
DESC_MAX = 1024
_json = msgspec.json.Encoder()


class CreateRequest(msgspec.Struct, forbid_unknown_fields=False):
    ttl: int = 86400
    public: bool = False
    name: str | None = None
    desc: str = ""
    ack_wait: float | None = None  # seconds
    max_in_flight: int | None = None
    readers: list | None = None  # with users configured: who besides the creator may read it


_create_decoder = msgspec.json.Decoder(CreateRequest)


class ListRequest(msgspec.Struct):
    after: str | None = None  # continue after this msg_id
    limit: int = 0  # at most this many (0: as many as fit)


_list_decoder = msgspec.json.Decoder(ListRequest)


def error_body(code: int, text: str) -> bytes:
    return _json.encode({"error": text, "code": code})


class MailboxAPI:
    """The mq9 layer of one node."""

    def __init__(self, server: "Server", replicator: Replicator, settings: "Settings", view=None) -> None:
        self.server = server
        self.replicator = replicator
        self.settings = settings
        self.view = view
        self.delivery = Delivery(server, replicator)
        self.barrier = ReadBarrier(replicator)
        self.dropped = 0  # publishes without reply that could not be stored
        self.acks = 0  # acknowledgements (of any kind) this node's clients sent

    # ---- the server's hooks ----------------------------------------------------------

    def on_publish(self, client: "ClientConnection", op: Pub) -> None:
        subject = op.subject
        if subject.startswith(subj.MSG_PREFIX):
            self._store(client, op, subject[len(subj.MSG_PREFIX):])
        elif subject.startswith(subj.ACK_PREFIX):
            self._ack(client, op, subject[len(subj.ACK_PREFIX):])
        elif subject == b"$mq9.AI.MAILBOX.CREATE":
            self._create(client, op)
        elif subject.startswith(b"$mq9.AI.MAILBOX.LIST."):
            if not self._refused(client, op, subject[21:].decode(errors="replace")):
                self._read(client, op, self._list, subject[21:])
        elif subject.startswith(b"$mq9.AI.MAILBOX.INFO."):
            if not self._refused(client, op, subject[21:].decode(errors="replace")):
                self._read(client, op, self._info, subject[21:])
        elif subject.startswith(b"$mq9.AI.MAILBOX.DELETE."):
            self._delete(client, op, subject[23:])
        elif subject == subj.PUBLIC_LIST:
            self._read(client, op, self._public_list, b"")
        elif subject == subj.NODE_STATUS and self.view is not None:
            self._read(client, op, lambda _, __: (200, _json.encode(self._node_status())), b"", current=False)
        else:
            self._fail(client, op, 400, f"unknown mq9 subject {subject[:128].decode(errors='replace')}")

    def on_subscribe(self, client: "ClientConnection", sub: Subscription) -> bytes | bool:
        subject = sub.subject
        refuse = errors.PERMISSION_SUB.line(subject.decode(errors="replace"))
        if subject == subj.PUBLIC_LIST and sub.queue is None:
            self.delivery.add_watcher(client, sub)
            return True
        if not subject.startswith(subj.MSG_PREFIX):
            return refuse
        try:
            mail_id, levels, _ = subj.parse_subscribe(subject[len(subj.MSG_PREFIX):])
        except subj.SubjectError as exc:
            log.info("%s - cid:%d - refused subscription %r: %s", client.addr, client.cid, subject, exc)
            return refuse
        if self._owned_mailboxes():
            mb = self._mailbox(mail_id)
            if mb is not None and not ownership.may_read(mb, client.access.user.name):
                log.warning("%s - cid:%d - %s may not read mailbox %s (owner %s)", client.addr, client.cid,
                            client.access.user.name or "anonymous", mail_id, mb.owner)
                return refuse
        if sub.queue is None:
            self.delivery.add_plain(client, sub, mail_id, levels)
        else:
            self.delivery.add_member(client, sub, mail_id, levels, sub.queue.decode(errors="replace"))
        return True

    def on_unsubscribe(self, client: "ClientConnection", sub: Subscription) -> None:
        self.delivery.remove(sub)

    def on_client_closed(self, client: "ClientConnection") -> None:
        pass  # each subscription was removed through on_unsubscribe

    async def drain(self, timeout_s: float) -> None:
        """Wait (bounded) for writes already sent to Raft to be answered."""
        import asyncio

        deadline = asyncio.get_running_loop().time() + timeout_s
        while self.replicator.pending_writes() and asyncio.get_running_loop().time() < deadline:
            await asyncio.sleep(0.01)

    def _node_status(self) -> dict:
        status = self.view.status()
        status["dropped_publishes"] = self.dropped
        status["slow_consumers"] = self.server.slow_consumers
        status["clients"] = len(self.server.clients)
        status["writes"] = self.replicator.write_stats()
        return status

    # ---- replies ---------------------------------------------------------------------

    def _reply(self, reply: bytes | None, body: bytes) -> None:
        if reply:
            self.server.router.publish(None, reply, None, None, body)

    def _fail(self, client: "ClientConnection", op: Pub, code: int, text: str) -> None:
        if op.reply:
            self._reply(op.reply, error_body(code, text))
        else:
            self.dropped += 1
            log.warning("%s - cid:%d - dropped publish to %s: %s (%d)", client.addr, client.cid,
                        op.subject[:128].decode(errors="replace"), text, code)

    def _write(self, client: "ClientConnection", op: Pub, command: c.Command, render) -> None:
        """Replicate `command`; reply with `render(result)` after commit; hold PONGs meanwhile."""
        ticket = client.begin_write()

        def done(result: Result) -> None:
            if isinstance(result, Failure):
                self._fail(client, op, result.code, result.error)
            elif op.reply:
                self._reply(op.reply, render(result))
            client.end_write(ticket)

        self.replicator.write(command, done)

    # ---- writes ----------------------------------------------------------------------

    def _store(self, client: "ClientConnection", op: Pub, tail: bytes) -> None:
        try:
            mail_id, word = subj.parse_publish(tail)
        except subj.SubjectError as exc:
            self._fail(client, op, 400, str(exc))
            return
        dedup = header_value(op.headers, "Nats-Msg-Id") if op.headers else None
        self._write(client, op, c.StoreMessage(mail_id, word, op.headers, op.payload, dedup), _stored_body)

    def _create(self, client: "ClientConnection", op: Pub) -> None:
        try:
            req = _create_decoder.decode(op.payload or b"{}")
        except DECODE_ERRORS as exc:
            self._fail(client, op, 400, f"invalid request: {exc}")
            return
        problem = _check_create(req)
        if problem:
            self._fail(client, op, 400, problem)
            return
        readers = ownership.check_readers(req.readers)
        if isinstance(readers, str):
            self._fail(client, op, 400, readers)
            return
        mail_id = req.name or "m-" + os.urandom(16).hex()
        ack_wait_s = req.ack_wait if req.ack_wait is not None else self.settings.default_ack_wait_s
        max_in_flight = req.max_in_flight if req.max_in_flight is not None else self.settings.default_max_in_flight
        command = c.CreateMailbox(mail_id, req.ttl, req.public, req.name or "", req.desc,
                                  int(ack_wait_s * 1000), max_in_flight, ownership.owner_of(client), readers)
        self._write(client, op, command, _created_body)

    def _owned_mailboxes(self) -> bool:
        """Ownership can only apply when users are configured (tokens are one shared identity)."""
        auth = self.server.security.authenticator
        return bool(auth.users or auth.nkeys)

    def _refused(self, client: "ClientConnection", op: Pub, mail_id: str) -> bool:
        """Answer 403 (and return True) when the mailbox is someone else's (ownership.py)."""
        if not self._owned_mailboxes() or not subj.valid_name(mail_id):
            return False
        mb = self._mailbox(mail_id)
        if mb is None or ownership.may_read(mb, client.access.user.name):
            return False
        log.warning("%s - cid:%d - %s may not read mailbox %s", client.addr, client.cid,
                    client.access.user.name or "anonymous", mail_id)
        self._fail(client, op, 403, f"mailbox {mail_id} belongs to another user")
        return True

    def _ack(self, client: "ClientConnection", op: Pub, tail: bytes) -> None:
        try:
            seq, group, mail_id = subj.parse_ack(tail)
        except subj.SubjectError as exc:
            self._fail(client, op, 400, str(exc))
            return
        if self._refused(client, op, mail_id):
            return
        words = op.payload.split(None, 1)
        kind = _ACK_KINDS.get(words[0] if words else b"")
        if kind is None:
            self._fail(client, op, 400, "unknown acknowledgement (use +ACK, -NAK, +WPI or +TERM)")
            return
        self.acks += 1
        self._write(client, op, c.Ack(mail_id, seq, kind, group), _ok_body)

    def _delete(self, client: "ClientConnection", op: Pub, tail: bytes) -> None:
        mail_id, msg_id = subj.split_last(tail)
        seq = subj.seq_of(msg_id)
        if not subj.valid_name(mail_id) or seq is None:
            self._fail(client, op, 400, "expected $mq9.AI.MAILBOX.DELETE.{mail_id}.{msg_id}")
            return
        if self._refused(client, op, mail_id):
            return
        self._write(client, op, c.DeleteMessage(mail_id, seq), _deleted_body)

    # ---- reads -----------------------------------------------------------------------

    def _read(self, client: "ClientConnection", op: Pub, reader, tail: bytes, current: bool = True) -> None:
        """Answer a read once this node has applied every write committed before it came
        (barrier.py), so a write acknowledged on any node is in the answer. `current=False`
        (NODE.STATUS: this node's own view, for operators) answers at once, even cut off."""
        if not op.reply:
            self._fail(client, op, 400, "a request needs a reply subject")
            return

        def answer(failure: Failure | None) -> None:
            if failure is not None:
                self._reply(op.reply, error_body(failure.code, "unavailable: cannot confirm this read is "
                                                              f"current ({failure.error.removeprefix('unavailable: ')})"))
                return
            try:
                code, body = reader(tail, op.payload)
            except Exception:
                log.exception("read %s failed", op.subject)
                code, body = 503, error_body(503, "unavailable: storage read failed")
            self._reply(op.reply, body if code == 200 else error_body(code, body.decode()))

        if current:
            self.barrier.wait(answer)
        else:
            answer(None)

    def _mailbox(self, mail_id: str) -> records.Mailbox | None:
        raw = self.replicator.store.get(keys.mailbox(mail_id))
        if raw is None:
            return None
        mb = records.decode_mailbox(raw)
        if mb.expires_ms and mb.expires_ms <= self.replicator.state.now_ms:
            return None  # expired by log time; the next tick removes it
        return mb

    def _list(self, tail: bytes, body: bytes) -> tuple[int, bytes]:
        """Stored messages in delivery order. Long lists come in pages: the reply says
        `"truncated": true`, and a request `{"after": "<last msg_id>"}` gets the next page."""
        mail_id = tail.decode(errors="replace")
        if not subj.valid_name(mail_id) or self._mailbox(mail_id) is None:
            return 404, f"mailbox {mail_id} not found".encode()
        try:
            page = _list_decoder.decode(body or b"{}")
        except DECODE_ERRORS as exc:
            return 400, f"invalid request: {exc}".encode()
        items = []
        budget = self.settings.max_payload - 1024
        size = 0
        truncated = False
        prefix = keys.messages(mail_id)
        start = prefix
        if page.after:
            after = subj.seq_of(page.after)
            if after is None:
                return 400, b"after must be a msg_id"
            level = next((lvl for lvl in range(c.LEVELS)
                          if self.replicator.store.get(keys.message(mail_id, lvl, after)) is not None), None)
            if level is None:
                return 404, f"message {page.after} not found in {mail_id}".encode()
            start = keys.message(mail_id, level, after + 1)
        limit = min(page.limit or LIST_MAX_ENTRIES, LIST_MAX_ENTRIES)
        for key, value in self.replicator.store.scan(start, keys.end_of(prefix)):
            _, seq = keys.split_message(key)
            msg = records.decode_message(value)
            item = {"msg_id": str(seq), "priority": c.WORDS[msg.word], "ts": msg.ts_ms}
            size += 64 + len(item["msg_id"])
            if len(items) >= limit or size > budget:
                truncated = True
                break
            items.append(item)
        body = {"mail_id": mail_id, "messages": items}
        if truncated:
            body["truncated"] = True
        return 200, _json.encode(body)

    def _info(self, tail: bytes, body: bytes) -> tuple[int, bytes]:
        mail_id = tail.decode(errors="replace")
        mb = self._mailbox(mail_id) if subj.valid_name(mail_id) else None
        if mb is None:
            return 404, f"mailbox {mail_id} not found".encode()
        store = self.replicator.store
        counts = dict.fromkeys(c.LEVEL_NAMES, 0)
        names = list(counts)
        prefix = keys.messages(mail_id)
        for key, _ in store.scan(prefix, keys.end_of(prefix)):
            counts[names[key[-9]]] += 1
        groups = []
        gprefix = keys.groups(mail_id)
        for key, value in store.scan(gprefix, keys.end_of(gprefix)):
            name = key[len(gprefix):].decode()
            rec = records.decode_group(value)
            loads = {member: 0 for member, _ in rec.members}
            pprefix = keys.inflight_pages(mail_id, name)
            for _, page in store.scan(pprefix, keys.end_of(pprefix)):
                for entry in records.decode_inflight_page(page).values():
                    loads[entry.member] = loads.get(entry.member, 0) + 1
            groups.append({
                "name": name,
                "members": [{"member": m, "node": n, "in_flight": loads.get(m, 0)} for m, n in rec.members],
                "in_flight": sum(loads.values()),
                "redelivery_pending": len(rec.redeliver),
            })
        return 200, _json.encode({
            "mail_id": mb.mail_id, "public": mb.public, "name": mb.name, "desc": mb.desc,
            "ttl": mb.ttl_s, "created_at": mb.created_ms, "expires_at": mb.expires_ms or None,
            "ack_wait": mb.ack_wait_ms / 1000, "max_in_flight": mb.max_in_flight,
            **({"owner": mb.owner, "readers": list(mb.readers)} if mb.owner else {}),
            "messages": counts, "total": sum(counts.values()), "groups": groups,
        })

    def _public_list(self, tail: bytes, body: bytes) -> tuple[int, bytes]:
        store = self.replicator.store
        out = []
        for key, _ in store.scan(keys.PUBLIC_PREFIX, keys.end_of(keys.PUBLIC_PREFIX)):
            mb = self._mailbox(key[1:].decode())
            if mb is not None:
                out.append({"mail_id": mb.mail_id, "name": mb.name, "desc": mb.desc,
                            "ttl": mb.ttl_s, "expires_at": mb.expires_ms or None})
        return 200, _json.encode({"mailboxes": out})


_ACK_KINDS = {b"": c.ACK, b"+ACK": c.ACK, b"-NAK": c.NAK, b"+WPI": c.WPI, b"+TERM": c.TERM}


# every number a client gives must fit the log's 64-bit integers once in milliseconds
TTL_MAX_S = 10 * 365 * 86400
ACK_WAIT_MAX_S = 7 * 86400
MAX_IN_FLIGHT_MAX = 1_000_000
# what decoding a client's JSON may raise: invalid UTF-8 and JSON nested too deep are not DecodeErrors
DECODE_ERRORS = (msgspec.DecodeError, UnicodeDecodeError, RecursionError)


def _check_create(req: CreateRequest) -> str:
    if not 0 <= req.ttl <= TTL_MAX_S:
        return f"ttl must be an integer from 0 to {TTL_MAX_S} seconds"
    if req.public and not req.name:
        return "a public mailbox needs a name"
    if req.name is not None and not subj.valid_name(req.name):
        return "invalid name: 1-128 of a-z 0-9 . - _, no empty token, not ending in a priority word"
    if len(req.desc) > DESC_MAX:
        return f"desc longer than {DESC_MAX} characters"
    if req.ack_wait is not None and not 0 < req.ack_wait <= ACK_WAIT_MAX_S:  # NaN fails both
        return f"ack_wait must be > 0 and at most {ACK_WAIT_MAX_S} seconds"
    if req.max_in_flight is not None and not 0 < req.max_in_flight <= MAX_IN_FLIGHT_MAX:
        return f"max_in_flight must be from 1 to {MAX_IN_FLIGHT_MAX}"
    return ""


def _stored_body(result: Stored) -> bytes:
    return b'{"msg_id":"%d","mail_id":"%s"}' % (result.seq, result.mail_id.encode())


def _created_body(result: Created) -> bytes:
    return _json.encode({"mail_id": result.mail_id, "is_new": result.is_new, "ttl": result.ttl,
                         "expires_at": result.expires_at})


def _ok_body(result: object) -> bytes:
    return b'{"ok":true}'


def _deleted_body(result: object) -> bytes:
    return b'{"deleted":true}'
