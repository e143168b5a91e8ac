"""mq9's own monitoring endpoints: /raftz (this node's Raft view of the whole cluster)
and /mailboxz (what is stored, per mailbox, never a payload).

/raftz is `mq9 cluster status`'s view plus the journal's bounds and each peer's lag
(the leader's commit index minus the peer's match index; only the leader knows it, so a
follower reports its own apply lag instead). /mailboxz pages through mailbox records in
mail-id order (`limit`, `offset`, `search` for a part of the id or name, `public=1`);
message counts and bytes come from the census (`census.py`), which is at most a few
seconds old and says when it was taken; groups, members and in-flight counts are read
for the mailboxes of the page only.
"""

from __future__ import annotations

import time

from cluster import commands as c
from cluster import keys, records
from node.ops.census import Count
from node.ops.nats_endpoints import rfc3339
from node.ops.parts import NodeParts

MAILBOXZ_DEFAULT_LIMIT = 100
MAILBOXZ_MAX_LIMIT = 1000


def raftz(parts: NodeParts) -> dict:
    status = parts.view.status()
    raft = parts.replicator.raft
    first, last = raft.log_bounds() if raft is not None else (0, 0)
    commit = status.get("commit_index") or 0
    applied = status.get("applied_index") or 0
    role = status.get("state")
    peers = []
    for peer in status["peers"]:
        match = peer.get("match_index")
        peers.append({
            "name": peer["name"], "raft": peer["raft"], "client_url": peer["client_url"],
            "connected": peer["connected"],
            "role": "leader" if peer["raft"] == status.get("leader") else "follower",
            "match_index": match if role == "leader" else None,
            "lag": max(0, commit - match) if role == "leader" and match is not None else None,
        })
    return {
        "server_id": parts.server.server_id,
        "now": rfc3339(time.time()),
        "name": status["name"],
        "raft": status["raft"],
        "client_url": status["client_url"],
        "role": role,
        "term": status.get("term"),
        "leader": status.get("leader"),
        "leader_name": status.get("leader_name"),
        "has_quorum": status.get("has_quorum"),
        "commit_index": commit,
        "last_applied": applied,
        "apply_lag": max(0, commit - applied),
        "state_index": status.get("state_index"),
        "log_first_index": first,
        "log_last_index": last,
        "log_entries": status.get("log_len"),
        "snapshot_index": max(0, first - 1) if first else 0,
        "peers": peers,
    }


def _int(query, name: str, default: int, hi: int | None = None) -> int:
    value = int(query.get(name, default))
    if value < 0:
        raise ValueError(name)
    return min(value, hi) if hi is not None else value


async def mailboxz(parts: NodeParts, query) -> tuple[int, dict]:
    try:
        limit = _int(query, "limit", MAILBOXZ_DEFAULT_LIMIT, MAILBOXZ_MAX_LIMIT)
        offset = _int(query, "offset", 0)
    except ValueError:
        return 400, {"error": "limit and offset are numbers >= 0"}
    search = query.get("search", "").strip().lower()
    only_public = query.get("public", "") in ("1", "true")
    exact = query.get("mail_id", "")
    census = await parts.census.current()
    store, now_ms = parts.replicator.store, parts.replicator.state.now_ms
    lo, hi = (keys.mailbox(exact), keys.end_of(keys.mailbox(exact) + b"\0")) if exact else (b"B", keys.end_of(b"B"))
    matched = 0
    page = []
    for _, value in store.scan(lo, hi):
        mb = records.decode_mailbox(value)
        if exact and mb.mail_id != exact:
            continue
        if mb.expires_ms and mb.expires_ms <= now_ms:
            continue  # expired by log time; the next tick removes it
        if only_public and not mb.public:
            continue
        if search and search not in mb.mail_id.lower() and search not in mb.name.lower():
            continue
        matched += 1
        if matched > offset and len(page) < limit:
            page.append(mb)
    return 200, {
        "server_id": parts.server.server_id,
        "now": rfc3339(time.time()),
        "census_at": rfc3339(census.taken_at),
        "total_mailboxes": census.mailboxes,
        "total_messages": census.messages,
        "total_bytes": census.bytes,
        "matched": matched,
        "offset": offset,
        "limit": limit,
        "mailboxes": [_mailbox_row(store, mb, census.per_mailbox.get(mb.mail_id) or Count()) for mb in page],
    }


def _mailbox_row(store, mb: records.Mailbox, count: Count) -> dict:
    groups = members = in_flight = 0
    gprefix = keys.groups(mb.mail_id)
    for key, value in store.scan(gprefix, keys.end_of(gprefix)):
        groups += 1
        members += len(records.decode_group(value).members)
        pprefix = keys.inflight_pages(mb.mail_id, key[len(gprefix):].decode())
        for _, page in store.scan(pprefix, keys.end_of(pprefix)):
            in_flight += len(records.decode_inflight_page(page))
    return {
        "mail_id": mb.mail_id,
        "public": mb.public,
        "name": mb.name,
        "desc": mb.desc,
        "ttl": mb.ttl_s,
        "created_at": mb.created_ms,
        "expires_at": mb.expires_ms or None,
        "messages": {word: count.by_level[level] for level, word in enumerate(c.LEVEL_NAMES)},
        "total": sum(count.by_level),
        "bytes": count.bytes,
        "groups": groups,
        "members": members,
        "in_flight": in_flight,
    }
