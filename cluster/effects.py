"""What apply returns: one result per command, and effects for every node's subscribers.

Results go back to the client that sent the command (only the submitting node looks
at them). Effects are what each node must do for its own subscribers once a batch is
applied: deliver a stored message, hand an assigned message to a queue-group member,
announce a public mailbox created or expired. Domain errors are results with a code
(the contract's 400/404/409/413/507), never exceptions.
"""

from __future__ import annotations

import msgspec

from cluster.records import Mailbox


class Failure(msgspec.Struct, frozen=True):
    code: int
    error: str


class Created(msgspec.Struct, frozen=True):
    mail_id: str
    is_new: bool
    ttl: int
    expires_at: int | None


class Stored(msgspec.Struct, frozen=True):
    mail_id: str
    seq: int
    duplicate: bool = False


class Done(msgspec.Struct, frozen=True):
    pass


DONE = Done()
Result = Failure | Created | Stored | Done | None


class MessageStored(msgspec.Struct, frozen=True, gc=False):
    mail_id: str
    seq: int
    level: int
    word: int
    ts_ms: int
    headers: bytes | None
    payload: bytes


class MessageAssigned(msgspec.Struct, frozen=True, gc=False):
    mail_id: str
    group: str
    member: str
    level: int
    seq: int
    delivery: int


class MailboxCreated(msgspec.Struct, frozen=True):
    mailbox: Mailbox


class MailboxExpired(msgspec.Struct, frozen=True):
    mailbox: Mailbox


class NodeAnnounced(msgspec.Struct, frozen=True):
    """A node (re)started: its client URL may have changed."""

    node: str
    client_url: str
    name: str


class MembersDropped(msgspec.Struct, frozen=True):
    """The cluster dropped every queue-group member of `node` (it was seen down)."""

    node: str


Effect = (MessageStored | MessageAssigned | MailboxCreated | MailboxExpired | NodeAnnounced
          | MembersDropped)


def not_found(mail_id: str) -> Failure:
    return Failure(404, f"mailbox {mail_id} not found")
