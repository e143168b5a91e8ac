"""Publish and subscribe permissions with NATS wildcards, allow and deny, as nats-server has them.

A user's permissions are two lists per direction: `allow` (empty: everything) and `deny`
(checked after allow, and winning). Patterns use `*` (one token) and `>` (the rest).
- publish: the subject is literal; it may be published if it matches an allowed pattern
  and no denied one;
- subscribe: the subscription's subject may itself have wildcards; it is allowed if it
  is a subset of an allowed pattern (`orders.*` inside `orders.>`) and not inside a
  denied one; a subscription that only overlaps a denied pattern (`>` with `secret.>`
  denied) is allowed, and the messages it would get from the denied part are dropped at
  delivery (`delivery_denied`), as nats-server does.
Answers are cached per subject (bounded), since the same subjects come again and again
on the data path.
"""

from __future__ import annotations

from dataclasses import dataclass, field

CACHE_MAX = 4096


def _tokens(subject: bytes) -> list[bytes]:
    return subject.split(b".")


def matches(pattern: list[bytes], subject: list[bytes]) -> bool:
    """A literal subject against a pattern."""
    for i, token in enumerate(pattern):
        if token == b">":
            return len(subject) > i
        if i >= len(subject):
            return False
        if token != b"*" and token != subject[i]:
            return False
    return len(subject) == len(pattern)


def is_subset(sub: list[bytes], pattern: list[bytes]) -> bool:
    """Every subject `sub` (a subscription, maybe with wildcards) can match also matches `pattern`."""
    for i, token in enumerate(pattern):
        if token == b">":
            return len(sub) > i
        if i >= len(sub):
            return False
        if sub[i] == b">":
            return False  # sub is wider here
        if token == b"*":
            continue
        if sub[i] != token:  # a literal in the pattern: sub must have the same literal
            return False
    return len(sub) == len(pattern)


def overlaps(a: list[bytes], b: list[bytes]) -> bool:
    """Some literal subject matches both patterns."""
    for i in range(max(len(a), len(b))):
        ta = a[i] if i < len(a) else None
        tb = b[i] if i < len(b) else None
        if ta == b">" or tb == b">":
            return ta is not None and tb is not None
        if ta is None or tb is None:
            return False
        if ta != b"*" and tb != b"*" and ta != tb:
            return False
    return True


@dataclass
class Rule:
    """One direction: allow (empty: all) and deny lists, compiled to tokens."""

    allow: tuple[tuple[bytes, ...], ...] = ()
    deny: tuple[tuple[bytes, ...], ...] = ()
    _cache: dict[bytes, bool] = field(default_factory=dict, repr=False, compare=False)

    @classmethod
    def of(cls, allow: list[str] | None, deny: list[str] | None) -> "Rule":
        return cls(tuple(tuple(_tokens(p.encode())) for p in allow or ()),
                   tuple(tuple(_tokens(p.encode())) for p in deny or ()))

    @property
    def unrestricted(self) -> bool:
        return not self.allow and not self.deny

    def literal(self, subject: bytes) -> bool:
        """May this literal subject pass (publish; delivery filtering)?"""
        hit = self._cache.get(subject)
        if hit is not None:
            return hit
        tokens = _tokens(subject)
        ok = (not self.allow or any(matches(list(p), tokens) for p in self.allow)) \
            and not any(matches(list(p), tokens) for p in self.deny)
        if len(self._cache) >= CACHE_MAX:
            self._cache.clear()
        self._cache[subject] = ok
        return ok

    def subscription(self, subject: bytes) -> bool:
        """May a subscription to `subject` (wildcards allowed) be made?"""
        tokens = _tokens(subject)
        if self.allow and not any(is_subset(tokens, list(p)) for p in self.allow):
            return False
        return not any(is_subset(tokens, list(p)) for p in self.deny)

    def partly_denied(self, subject: bytes) -> bool:
        """Could some message of this (allowed) subscription fall in a denied pattern?"""
        tokens = _tokens(subject)
        return any(overlaps(tokens, list(p)) for p in self.deny)


@dataclass
class Permissions:
    publish: Rule = field(default_factory=Rule)
    subscribe: Rule = field(default_factory=Rule)

    @classmethod
    def from_config(cls, raw: dict | None) -> "Permissions | None":
        """`{"publish": {"allow": [...], "deny": [...]}, "subscribe": ...}`; a bare list means allow.
        None (no permissions): the user may do everything."""
        if not raw:
            return None

        def rule(value) -> Rule:
            if value is None:
                return Rule()
            if isinstance(value, (list, tuple)):
                return Rule.of(list(value), None)
            if isinstance(value, str):
                return Rule.of([value], None)
            return Rule.of(value.get("allow"), value.get("deny"))

        return cls(rule(raw.get("publish")), rule(raw.get("subscribe")))

    def can_publish(self, subject: bytes) -> bool:
        return self.publish.literal(subject)

    def can_subscribe(self, subject: bytes) -> bool:
        return self.subscribe.subscription(subject)

    def delivery_denied(self, subject: bytes) -> bool:
        """A message on `subject` must not reach this user (a subscription that overlaps a deny)."""
        return bool(self.subscribe.deny) and not self.subscribe.literal(subject)
