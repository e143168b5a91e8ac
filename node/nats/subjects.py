"""Subject validation and the subscription trie (nats-server's sublist, in small).

Subjects are dot-separated tokens. A subscription may use `*` (exactly one token) and
`>` (one or more tokens, last only). `Sublist.match(subject)` walks the trie once per
distinct subject and caches the answer: plain subscribers, and queue subscribers
already grouped by queue name (groups with the same name under different subjects
merge, as in nats-server). Any insert or removal clears the cache, which is cheap
because subscriptions change far less often than messages flow.

Everything here is bytes: the subject of a message is looked up exactly as it arrived.
"""

from __future__ import annotations

from typing import Any

_SPACE_CHARS = b" \t\r\n\f"
CACHE_MAX = 4096


def valid_subject(subject: bytes) -> bool:
    """A subject a client may subscribe to: non-empty tokens, `>` only as the last token."""
    if not subject:
        return False
    tokens = subject.split(b".")
    last = len(tokens) - 1
    for i, token in enumerate(tokens):
        if not token:
            return False
        if len(token) == 1:
            if token == b">" and i != last:
                return False
            if token in (b" ", b"\t", b"\r", b"\n", b"\f"):
                return False
        elif any(c in _SPACE_CHARS for c in token):
            return False
    return True


def valid_literal_subject(subject: bytes) -> bool:
    """A subject a client may publish to: a valid subject with no wildcard token."""
    if not valid_subject(subject):
        return False
    return all(token not in (b"*", b">") for token in subject.split(b"."))


class Subscription:
    """One SUB of one client. `client` is whoever receives matches (a client or a route)."""

    __slots__ = ("client", "sid", "subject", "queue", "max_msgs", "delivered")

    def __init__(self, client: Any, sid: bytes, subject: bytes, queue: bytes | None) -> None:
        self.client = client
        self.sid = sid
        self.subject = subject
        self.queue = queue
        self.max_msgs = 0  # 0: unlimited; else remove after this many deliveries (UNSUB max)
        self.delivered = 0


class Match:
    """What a subject matched, split for delivery.

    `plain`: local plain subscriptions. `routes`: other nodes with plain interest, each once.
    `groups`: (queue name, local members, remote members); a remote member stands for a
    node with members of that group (route interest). Subscriptions owned by a route say
    so with `client.is_route`; the split is done once per subject, then cached.
    """

    __slots__ = ("plain", "groups", "routes")

    def __init__(self, plain: list[Subscription], groups: list[tuple[bytes, list[Subscription], list[Subscription]]],
                 routes: list) -> None:
        self.plain = plain
        self.groups = groups
        self.routes = routes

    def __bool__(self) -> bool:
        return bool(self.plain or self.groups or self.routes)


class _Node:
    __slots__ = ("children", "star", "rest", "plain", "queues")

    def __init__(self) -> None:
        self.children: dict[bytes, _Node] = {}
        self.star: _Node | None = None  # the `*` child
        self.rest: _Node | None = None  # the `>` child
        self.plain: dict[Subscription, None] = {}  # an ordered set
        self.queues: dict[bytes, dict[Subscription, None]] = {}

    def empty(self) -> bool:
        return not (self.children or self.star or self.rest or self.plain or self.queues)


EMPTY = Match([], [], [])


class Sublist:
    """The trie of subscriptions with a cache of match results."""

    __slots__ = ("_root", "_cache", "count")

    def __init__(self) -> None:
        self._root = _Node()
        self._cache: dict[bytes, Match] = {}
        self.count = 0

    def cache_size(self) -> int:
        """How many subjects' matches are cached (nats-server's `num_cache`)."""
        return len(self._cache)

    def insert(self, sub: Subscription) -> None:
        node = self._root
        for token in sub.subject.split(b"."):
            if token == b"*":
                nxt = node.star
                if nxt is None:
                    nxt = node.star = _Node()
            elif token == b">":
                nxt = node.rest
                if nxt is None:
                    nxt = node.rest = _Node()
            else:
                nxt = node.children.get(token)
                if nxt is None:
                    nxt = node.children[token] = _Node()
            node = nxt
        if sub.queue is None:
            node.plain[sub] = None
        else:
            node.queues.setdefault(sub.queue, {})[sub] = None
        self.count += 1
        self._cache.clear()

    def remove(self, sub: Subscription) -> bool:
        """Remove `sub`; prune empty trie nodes. Returns False if it was not there."""
        path: list[tuple[_Node, bytes]] = []
        node = self._root
        for token in sub.subject.split(b"."):
            path.append((node, token))
            if token == b"*":
                nxt = node.star
            elif token == b">":
                nxt = node.rest
            else:
                nxt = node.children.get(token)
            if nxt is None:
                return False
            node = nxt
        if sub.queue is None:
            if node.plain.pop(sub, False) is not None:
                return False
        else:
            members = node.queues.get(sub.queue)
            if members is None or members.pop(sub, False) is not None:
                return False
            if not members:
                del node.queues[sub.queue]
        self.count -= 1
        self._cache.clear()
        for parent, token in reversed(path):
            if not node.empty():
                break
            if token == b"*":
                parent.star = None
            elif token == b">":
                parent.rest = None
            else:
                del parent.children[token]
            node = parent
        return True

    def match(self, subject: bytes) -> Match:
        """All subscriptions whose subject matches `subject` (a literal subject)."""
        hit = self._cache.get(subject)
        if hit is not None:
            return hit
        found: list[Subscription] = []
        queued: dict[bytes, list[Subscription]] = {}
        _collect(self._root, subject.split(b"."), 0, found, queued)
        result = _split(found, queued) if (found or queued) else EMPTY
        if len(self._cache) >= CACHE_MAX:
            self._cache.clear()
        self._cache[subject] = result
        return result


def _split(found: list[Subscription], queued: dict[bytes, list[Subscription]]) -> Match:
    plain = [s for s in found if not s.client.is_route]
    routes = list(dict.fromkeys(s.client for s in found if s.client.is_route))
    groups = [(name, [m for m in members if not m.client.is_route], [m for m in members if m.client.is_route])
              for name, members in queued.items()]
    return Match(plain, groups, routes)


def _collect(node: _Node, tokens: list[bytes], i: int, plain: list, groups: dict) -> None:
    last = len(tokens)
    while True:
        if i == last:
            _add(node, plain, groups)
            return
        if node.rest is not None:  # `>` takes one or more of the remaining tokens
            _add(node.rest, plain, groups)
        if node.star is not None:
            _collect(node.star, tokens, i + 1, plain, groups)
        nxt = node.children.get(tokens[i])
        if nxt is None:
            return
        node = nxt
        i += 1


def _add(node: _Node, plain: list, groups: dict) -> None:
    if node.plain:
        plain.extend(node.plain)
    for name, members in node.queues.items():
        group = groups.get(name)
        if group is None:
            groups[name] = list(members)
        else:
            group.extend(members)
