"""Core NATS publish/subscribe and request/reply, on this node and across routes.

`Router.publish` looks the subject up in the sublist (cached) and:
- hands the message to every local plain subscriber (skipping the publisher's own when
  it asked for `echo: false`);
- for each queue group, to one local member (round-robin) if there is one, else to one
  other node that has members (that node picks its member);
- to every other node with plain interest, once per node, in one RMSG that also names
  the queue groups that node must serve;
- when nobody anywhere received a request, answers the requester with the `NATS/1.0 503`
  no-responders status on its reply subscription, as nats-server does.

`Router.publish_routed` is the receiving side: a message from another node goes to local
subscribers only (plain ones, and one member of each queue group it names), never on to
a third node, so nothing loops. The router knows nothing about mailboxes.
"""

from __future__ import annotations

from typing import Any

from node.nats import wire
from node.nats.subjects import Sublist, Subscription


class Router:
    """Subscription interest and fan-out."""

    __slots__ = ("sublist", "_rr", "messages_in", "messages_out", "on_interest")

    def __init__(self) -> None:
        self.sublist = Sublist()
        self._rr = 0
        self.messages_in = 0
        self.messages_out = 0
        self.on_interest = None  # callback(subject, queue, added: bool) for local subscriptions

    def subscribe(self, sub: Subscription) -> None:
        self.sublist.insert(sub)
        if self.on_interest is not None and not sub.client.is_route:
            self.on_interest(sub.subject, sub.queue, True)

    def unsubscribe(self, sub: Subscription) -> None:
        if self.sublist.remove(sub) and self.on_interest is not None and not sub.client.is_route:
            self.on_interest(sub.subject, sub.queue, False)

    def publish(self, origin: Any, subject: bytes, reply: bytes | None, headers: bytes | None, payload: bytes) -> int:
        """Deliver to matching subscribers here and on other nodes; return how many got it."""
        self.messages_in += 1
        match = self.sublist.match(subject)
        sent = 0
        for sub in match.plain:
            client = sub.client
            if client is origin and not origin.echo:
                continue
            client.deliver(sub, subject, reply, headers, payload)
            sent += 1
        routed: dict | None = None
        if match.routes:
            routed = {route: [] for route in match.routes}
        for name, local, remote in match.groups:
            sub = self._pick(local, origin)
            if sub is not None:
                sub.client.deliver(sub, subject, reply, headers, payload)
                sent += 1
            elif remote:
                route = self._pick(remote, None).client
                if routed is None:
                    routed = {}
                routed.setdefault(route, []).append(name)
        if routed:
            for route, queues in routed.items():
                route.send_msg(subject, reply, queues, headers, payload)
                sent += 1
        if sent == 0 and reply and origin is not None and origin.no_responders:
            self._no_responders(origin, reply)
        self.messages_out += sent
        return sent

    def publish_routed(self, subject: bytes, reply: bytes | None, queues: tuple[bytes, ...],
                       headers: bytes | None, payload: bytes) -> None:
        """A message another node sent us: local subscribers only."""
        match = self.sublist.match(subject)
        for sub in match.plain:
            sub.client.deliver(sub, subject, reply, headers, payload)
        if queues:
            for name, local, _ in match.groups:
                if name in queues:
                    sub = self._pick(local, None)
                    if sub is not None:
                        sub.client.deliver(sub, subject, reply, headers, payload)

    def _pick(self, members: list[Subscription], origin: Any) -> Subscription | None:
        n = len(members)
        if not n:
            return None
        self._rr += 1
        for k in range(n):
            sub = members[(self._rr + k) % n]
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
