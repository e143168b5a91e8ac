"""What one connection may do: its user, its permissions, the replies it may send.

Made at CONNECT from the credentials (node.auth decides), consulted by the connection
on every PUB/HPUB and SUB, and rebuilt on reload. With no permissions (auth off, or a
user without a `permissions` table) every check is one attribute test, so the data path
of an unrestricted client costs nothing more.

Replies are always allowed, as nats-server's `allow_responses` default: a message
delivered with a reply subject lets its receiver publish once to that subject (a
service answers a request it was sent), at most `RESPONSES_MAX` remembered per
connection. An mq9 acknowledgement (`$mq9.AI.ACK.{seq}.{group}.{mail_id}`) is such a
reply; it is allowed while the connection holds a subscription on that mailbox, since
mailbox deliveries are too many to remember one by one.
"""

from __future__ import annotations

import os

from node.auth.identity import ANONYMOUS, User
from node.auth.permissions import Permissions

RESPONSES_MAX = 65536
MQ9_ACK = b"$mq9.AI.ACK."
MQ9_MSG = b"$mq9.AI.MAILBOX.MSG."


def new_nonce() -> str:
    """nats-server's nonce: 11 random bytes, base64url without padding."""
    import base64

    return base64.urlsafe_b64encode(os.urandom(11)).decode().rstrip("=")


class Access:
    __slots__ = ("user", "perms", "responses", "filters_delivery")

    def __init__(self, user: User = ANONYMOUS) -> None:
        self.user = user
        self.perms: Permissions | None = user.permissions
        self.responses: dict[bytes, None] = {}
        self.filters_delivery = bool(self.perms is not None and self.perms.subscribe.deny)

    @property
    def restricted(self) -> bool:
        return self.perms is not None

    def may_publish(self, subject: bytes, subs) -> bool:
        perms = self.perms
        if perms is None or perms.can_publish(subject):
            return True
        if subject in self.responses:
            del self.responses[subject]
            return True
        if subject.startswith(MQ9_ACK):
            parts = subject[len(MQ9_ACK):].split(b".", 2)
            if len(parts) == 3:
                prefix = MQ9_MSG + parts[2]
                return any(s.subject == prefix or s.subject.startswith(prefix + b".") for s in subs.values())
        return False

    def may_subscribe(self, subject: bytes) -> bool:
        return self.perms is None or self.perms.can_subscribe(subject)

    def note_reply(self, reply: bytes) -> None:
        """A message with this reply subject was delivered: one answer to it is allowed."""
        responses = self.responses
        if len(responses) >= RESPONSES_MAX:
            del responses[next(iter(responses))]
        responses[reply] = None

    def delivery_denied(self, subject: bytes) -> bool:
        return self.filters_delivery and self.perms.delivery_denied(subject)
