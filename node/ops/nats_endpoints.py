"""nats-server's monitoring endpoints, in its field names and shapes: healthz, varz,
connz, subsz, routez.

Dashboards and scripts written for nats-server (`nats server report`, Grafana's NATS
dashboards via the exporter, `curl :8222/varz | jq .connections`) read these fields, so
the names, units and nesting follow nats-server's server/monitor.go: times in RFC 3339
with `Z`, `uptime` as `1d2h3m4s`, sizes in bytes, `connz` paged with `offset` and
`limit` and sorted with `sort`. What a NATS field cannot say (Raft, mailboxes) is in
mq9's own endpoints (`mq9_endpoints.py`), not here.
"""

from __future__ import annotations

import os
import time
from datetime import datetime, timezone

from node.nats.server import MQ9_VERSION, NATS_COMPAT_VERSION
from node.ops.parts import NodeParts, rss_bytes

CONNZ_SORTS = {
    "cid": lambda c: c.cid,
    "start": lambda c: c.started,
    "subs": lambda c: -len(c.subs),
    "pending": lambda c: -_pending(c),
    "msgs_to": lambda c: -c.msgs_out,
    "msgs_from": lambda c: -c.msgs_in,
    "bytes_to": lambda c: -c.bytes_out,
    "bytes_from": lambda c: -c.bytes_in,
    "uptime": lambda c: c.started,
}
CONNZ_DEFAULT_LIMIT = 1024


def rfc3339(ts: float) -> str:
    return datetime.fromtimestamp(ts, timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def uptime(seconds: float) -> str:
    """nats-server's uptime words: 45s, 3m10s, 2h0m5s, 1d4h0m0s."""
    s = int(seconds)
    days, s = divmod(s, 86400)
    hours, s = divmod(s, 3600)
    minutes, s = divmod(s, 60)
    if days:
        return f"{days}d{hours}h{minutes}m{s}s"
    if hours:
        return f"{hours}h{minutes}m{s}s"
    if minutes:
        return f"{minutes}m{s}s"
    return f"{s}s"


def _pending(client) -> int:
    transport = client.transport
    queued = len(client.out)
    if transport is not None and not transport.is_closing():
        queued += transport.get_write_buffer_size()
    return queued


def healthz(parts: NodeParts) -> tuple[int, dict]:
    """200 when this node applies the log and can reach a leader that has a majority,
    503 otherwise (a node cut off from the majority turns 503 within a few seconds)."""
    raft = parts.replicator.raft
    if raft is None:
        return 503, {"status": "unavailable", "error": "raft is not running"}
    if not raft.can_accept_writes(contact_s=2.0):
        leader = raft.leader_address()
        why = "no leader known" if leader is None else (
            "this leader has lost contact with a majority" if raft.is_leader() else f"leader {leader} is not reachable")
        return 503, {"status": "unavailable", "error": why}
    return 200, {"status": "ok"}


def varz(parts: NodeParts) -> dict:
    s, server = parts.settings, parts.server
    now = time.time()
    m_in, m_out, b_in, b_out = server.traffic()
    monitor = s.monitor_listen or ("", 0)
    return {
        "server_id": server.server_id,
        "server_name": s.server_name,
        "version": NATS_COMPAT_VERSION,
        "mq9_version": MQ9_VERSION,
        "proto": 1,
        "go": "python",
        "host": s.host,
        "port": s.port,
        "max_connections": server.security.limits.max_connections,  # 0: no limit
        "max_subscriptions": server.security.limits.max_subscriptions,
        "auth_required": server.security.authenticator.required,
        "tls_required": server.security.tls is not None,
        "ping_interval": int(s.ping_interval * 1e9),  # nanoseconds, as Go's time.Duration
        "ping_max": s.max_pings_out,
        "http_host": monitor[0],
        "http_port": monitor[1],
        "max_control_line": 4096,
        "max_payload": s.max_payload,
        "max_pending": s.max_pending,
        "now": rfc3339(now),
        "start": rfc3339(server.started),
        "uptime": uptime(now - server.started),
        "mem": rss_bytes(),
        "cores": os.cpu_count() or 1,
        "cpu": parts.cpu.percent(),
        "connections": len(server.clients),
        "total_connections": server.total_connections,
        "routes": len(parts.routes.routes) if parts.routes else 0,
        "remotes": len(parts.routes.routes) if parts.routes else 0,
        "in_msgs": m_in,
        "out_msgs": m_out,
        "in_bytes": b_in,
        "out_bytes": b_out,
        "slow_consumers": server.slow_consumers,
        "subscriptions": sum(len(c.subs) for c in server.clients.values()),
        "cluster": {"name": "mq9", "urls": list(server.connect_urls)},
        "raft": {"address": parts.replicator.raft_address, "peers": list(parts.replicator.peers)},
    }


def connz(parts: NodeParts, query) -> tuple[int, dict]:
    server = parts.server
    sort = query.get("sort", "cid")
    if sort not in CONNZ_SORTS:
        return 400, {"error": f"invalid sorting option: {sort} (one of {', '.join(CONNZ_SORTS)})"}
    try:
        offset = max(0, int(query.get("offset", 0)))
        limit = max(0, int(query.get("limit", CONNZ_DEFAULT_LIMIT)))
    except ValueError:
        return 400, {"error": "offset and limit are numbers"}
    subs = query.get("subs", "") in ("1", "true", "detail")
    now = time.time()
    clients = sorted(server.clients.values(), key=CONNZ_SORTS[sort])
    page = clients[offset:offset + limit]
    conns = []
    for c in page:
        ip, _, port = c.addr.rpartition(":")
        item = {
            "cid": c.cid,
            "kind": "Client",
            "type": "nats",
            "ip": ip,
            "port": int(port) if port.isdigit() else 0,
            "start": rfc3339(c.started),
            "uptime": uptime(now - c.started),
            "pending_bytes": _pending(c),
            "in_msgs": c.msgs_in,
            "out_msgs": c.msgs_out,
            "in_bytes": c.bytes_in,
            "out_bytes": c.bytes_out,
            "subscriptions": len(c.subs),
            "name": c.name,
            "lang": c.lang,
            "version": c.version,
        }
        if subs:
            item["subscriptions_list"] = sorted(sub.subject.decode(errors="replace") for sub in c.subs.values())
        conns.append(item)
    return 200, {
        "server_id": server.server_id,
        "now": rfc3339(now),
        "num_connections": len(conns),
        "total": len(clients),
        "offset": offset,
        "limit": limit,
        "connections": conns,
    }


def subsz(parts: NodeParts, query) -> dict:
    server = parts.server
    listing = query.get("subs", "") in ("1", "true", "detail")
    items = []
    total = 0
    for c in server.clients.values():
        total += len(c.subs)
        if listing:
            for sub in c.subs.values():
                entry = {"subject": sub.subject.decode(errors="replace"), "sid": sub.sid.decode(errors="replace"),
                         "msgs": sub.delivered, "cid": c.cid}
                if sub.queue:
                    entry["qgroup"] = sub.queue.decode(errors="replace")
                items.append(entry)
    out = {
        "server_id": server.server_id,
        "now": rfc3339(time.time()),
        "num_subscriptions": total,
        "num_routed_interest": len(parts.routes.interest) if parts.routes else 0,
        "num_cache": server.router.sublist.cache_size(),
    }
    if listing:
        out["subscriptions_list"] = sorted(items, key=lambda e: (e["cid"], e["sid"]))
    return out


def routez(parts: NodeParts) -> dict:
    routes = parts.routes.routes if parts.routes else {}
    out = []
    for rid, (peer, route) in enumerate(sorted(routes.items()), start=1):
        peername = route.transport.get_extra_info("peername") if route.transport else None
        out.append({
            "rid": rid,
            "remote_id": peer,
            "did_solicit": route.dialed_peer is not None,
            "ip": peername[0] if peername else "",
            "port": peername[1] if peername else 0,
            "pending_size": len(route.out) + (route.transport.get_write_buffer_size() if route.transport else 0),
        })
    return {
        "server_id": parts.server.server_id,
        "now": rfc3339(time.time()),
        "num_routes": len(out),
        "routes": out,
    }
