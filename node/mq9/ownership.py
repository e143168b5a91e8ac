"""Who may read a mailbox: its creator, the readers it was created with, or anyone.

With users configured, CREATE records the creating user as the mailbox's owner and its
`"readers": [...]` in the replicated record, so every node answers the same. Sending to
a mailbox stays open to all (that is what a mailbox is for); reading it (SUB, LIST, INFO,
DELETE, ACK) is the owner's and the readers' only. A mailbox created with no users
configured, or a public one (listed for everyone in PUBLIC.LIST), has no such limit;
permissions still apply to all of them.
"""

from __future__ import annotations

from cluster import records

READERS_MAX = 64


def may_read(mb: records.Mailbox, user: str) -> bool:
    return not mb.owner or mb.public or user == mb.owner or user in mb.readers


def owner_of(client) -> str:
    """The name CREATE records as owner: the connection's user when users are configured."""
    access = client.access
    auth = client.server.security.authenticator
    return access.user.name if (auth.users or auth.nkeys) and access.user.name else ""


def check_readers(readers: object) -> tuple[str, ...] | str:
    """The `readers` of a CREATE request, or why they are refused."""
    if readers is None:
        return ()
    if not isinstance(readers, list) or not all(isinstance(r, str) and 0 < len(r) <= 256 for r in readers):
        return "readers must be a list of user names"
    if len(readers) > READERS_MAX:
        return f"at most {READERS_MAX} readers"
    return tuple(dict.fromkeys(readers))
