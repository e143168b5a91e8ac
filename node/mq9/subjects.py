"""The `$mq9.AI.*` subject space: names, parsing and the subjects we write.

Subjects (mail ids may contain dots, so fixed tokens are matched from the ends):

    $mq9.AI.MAILBOX.CREATE                        request: create a mailbox
    $mq9.AI.MAILBOX.MSG.{mail_id}[.{word}]        publish: store; subscribe: receive
    $mq9.AI.MAILBOX.LIST.{mail_id}                request: stored messages, no payloads
    $mq9.AI.MAILBOX.DELETE.{mail_id}.{msg_id}     request: delete one message
    $mq9.AI.MAILBOX.INFO.{mail_id}                request: settings, counts, groups
    $mq9.AI.PUBLIC.LIST                           request or subscription: public mailboxes
    $mq9.AI.ACK.{seq}.{group hex | _}.{mail_id}   the reply subject of a delivered message
    $mq9.AI.NODE.STATUS                           request: this node's Raft view (operators)

A mail id is 1 to 128 characters of `a-z 0-9 . - _`, with no empty token and a last
token that is not a priority word, so `MSG.{mail_id}.{word}` is never ambiguous.
"""

from __future__ import annotations

import re

from cluster.commands import ALL_LEVELS, NORMAL, WORD_INDEX, WORD_LEVEL, WORDS

PREFIX = b"$mq9.AI."
MSG_PREFIX = b"$mq9.AI.MAILBOX.MSG."
ACK_PREFIX = b"$mq9.AI.ACK."
PUBLIC_LIST = b"$mq9.AI.PUBLIC.LIST"
NODE_STATUS = b"$mq9.AI.NODE.STATUS"

_NAME = re.compile(r"[a-z0-9_\-]+(\.[a-z0-9_\-]+)*")
_WORD_BYTES = {w.encode(): i for i, w in enumerate(WORDS)}
_CACHE_MAX = 8192


def valid_name(name: str) -> bool:
    if not 1 <= len(name) <= 128 or not _NAME.fullmatch(name):
        return False
    return name.rpartition(".")[2] not in WORD_INDEX


class SubjectError(ValueError):
    """A subject in the mq9 space that names no valid mailbox."""


_publish_cache: dict[bytes, tuple[str, int]] = {}


def parse_publish(tail: bytes) -> tuple[str, int]:
    """`{mail_id}[.{word}]` (after MSG_PREFIX) -> (mail_id, word index). Cached: it is per message."""
    hit = _publish_cache.get(tail)
    if hit is not None:
        return hit
    head, _, last = tail.rpartition(b".")
    word = _WORD_BYTES.get(last) if head else None
    if word is None:
        head, word = tail, NORMAL
    try:
        mail_id = head.decode()
    except UnicodeDecodeError:
        raise SubjectError("mail id is not text") from None
    if not valid_name(mail_id):
        raise SubjectError(f"invalid mail id {mail_id[:64]!r}")
    if len(_publish_cache) >= _CACHE_MAX:
        _publish_cache.clear()
    _publish_cache[tail] = (mail_id, word)
    return mail_id, word


def parse_subscribe(tail: bytes) -> tuple[str, int, str]:
    """`{mail_id}[.{word}|.*]` -> (mail_id, level mask, filter word or '*').

    Raises SubjectError for a wildcard anywhere but the last token, which would span
    mailboxes, and for an invalid mail id.
    """
    tokens = tail.split(b".")
    last = tokens[-1]
    if last == b"*" and len(tokens) > 1:
        mask, word, tokens = ALL_LEVELS, "*", tokens[:-1]
    elif last in _WORD_BYTES and len(tokens) > 1:
        word = last.decode()
        mask, tokens = 1 << WORD_LEVEL[word], tokens[:-1]
    else:
        mask, word = ALL_LEVELS, "*"
    if any(t in (b"*", b">") for t in tokens):
        raise SubjectError("wildcard over mailboxes")
    try:
        mail_id = b".".join(tokens).decode()
    except UnicodeDecodeError:
        raise SubjectError("mail id is not text") from None
    if not valid_name(mail_id):
        raise SubjectError(f"invalid mail id {mail_id[:64]!r}")
    return mail_id, mask, word


def split_last(tail: bytes) -> tuple[str, str]:
    """`{mail_id}.{last}` -> (mail_id, last) for DELETE."""
    head, _, last = tail.rpartition(b".")
    return head.decode(errors="replace"), last.decode(errors="replace")


def message_subject(mail_id: str, word: int) -> bytes:
    return MSG_PREFIX + mail_id.encode() + b"." + WORDS[word].encode()


def ack_tail(group: str | None, mail_id: str) -> bytes:
    """What follows the seq in an ack subject: `.{group hex | _}.{mail_id}`."""
    tag = group.encode().hex() if group else "_"
    return b".%s.%s" % (tag.encode(), mail_id.encode())


_ack_cache: dict[bytes, tuple[str | None, str]] = {}
SEQ_MAX = (1 << 64) - 1


def seq_of(text: bytes | str) -> int | None:
    """A msg id (a seq) as an int, or None: ASCII digits only (`str.isdigit` also takes
    "²"), and it must fit the 64 bits keys and the log encode it in."""
    if not text or len(text) > 20 or not text.isascii() or not text.isdigit():
        return None
    value = int(text)
    return value if value <= SEQ_MAX else None


def parse_ack(tail: bytes) -> tuple[int, str | None, str]:
    """`{seq}.{group hex | _}.{mail_id}` -> (seq, group, mail_id). The group and mailbox
    part is cached: every acknowledgement of a subscription repeats it."""
    seq_b, _, rest = tail.partition(b".")
    if seq_of(seq_b) is None:
        raise SubjectError("malformed acknowledgement subject")
    hit = _ack_cache.get(rest)
    if hit is None:
        tag, _, mail_b = rest.partition(b".")
        if not tag or not mail_b:
            raise SubjectError("malformed acknowledgement subject")
        try:
            hit = (None if tag == b"_" else bytes.fromhex(tag.decode()).decode(), mail_b.decode())
        except (ValueError, UnicodeDecodeError):
            raise SubjectError("malformed acknowledgement subject") from None
        if len(_ack_cache) >= _CACHE_MAX:
            _ack_cache.clear()
        _ack_cache[rest] = hit
    return int(seq_b), hit[0], hit[1]
