"""Core NATS publish/subscribe and request/reply. Knows nothing about mailboxes.

`Router.publish` looks the subject up in the sublist (cached), hands the message to
every plain subscriber and to one member of each queue group (round-robin), skips the
publisher's own subscriptions when it asked for `echo: false`, and, when nobody at
all received a request, answers the requester with the `NATS/1.0 503` no-responders
status on its matching reply subscription, as nats-server does.

Subscribers are anything with a `deliver(sub, subject, reply, headers, payload)`
method: local client connections today, routes to other nodes later.
"""

from __future__ import annotations

from typing import Any, Protocol

from node import wire
from node.subjects import Sublist, Subscription


class Receiver(Protocol):
    """What a subscription's owner must offer."""

    echo: bool

    def deliver(
        self, sub: Subscription, subject: bytes, reply: bytes | None, headers: bytes | None, payload: bytes
    ) -> None: ...


class Router:
    """Local subscription interest and fan-out."""

    __slots__ = ("sublist", "_rr", "messages_in", "messages_out")

    def __init__(self) -> None:
        self.sublist = Sublist()
        self._rr = 0
        self.messages_in = 0
        self.messages_out = 0

    def subscribe(self, sub: Subscription) -> None:
        self.sublist.insert(sub)

    def unsubscribe(self, sub: Subscription) -> None:
        self.sublist.remove(sub)

    def publish(
        self,
        origin: Any,
        subject: bytes,
        reply: bytes | None,
        headers: bytes | None,
        payload: bytes,
    ) -> int:
        """Deliver to matching subscribers; return how many received it."""
        self.messages_in += 1
        match = self.sublist.match(subject)
        sent = 0
        for sub in match.plain:
            client = sub.client
            if client is origin and not origin.echo:
                continue
            client.deliver(sub, subject, reply, headers, payload)
            sent += 1
        for group in match.groups:
            sub = self._pick(group, origin)
            if sub is not None:
                sub.client.deliver(sub, subject, reply, headers, payload)
                sent += 1
        if sent == 0 and reply and origin is not None and origin.no_responders:
            self._no_responders(origin, reply)
        self.messages_out += sent
        return sent

    def _pick(self, group: list[Subscription], origin: Any) -> Subscription | None:
        self._rr += 1
        n = len(group)
        for k in range(n):
            sub = group[(self._rr + k) % n]
            if sub.client is not origin or origin.echo:
                return sub
        return None

    def _no_responders(self, origin: Any, reply: bytes) -> None:
        """Tell a requester nobody listens: HMSG to its first plain subscription on the reply.

        As in nats-server, this bypasses normal delivery, so it does not count toward
        the subscription's UNSUB max.
        """
        for sub in self.sublist.match(reply).plain:
            if sub.client is origin:
                wire.append_msg(origin.out, reply, sub.sid, None, wire.NO_RESPONDERS_HEADERS, b"")
                origin.send(b"")
                return
