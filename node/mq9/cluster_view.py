"""Who is in the cluster, who is reachable, and what clients are told about it.

Every node announces itself in the log at start-up (`NodeRestarted`: Raft address, boot,
client URL, name), so every node knows every member's client URL from its own store.
Reachability is PySyncObj's view of its peer connections. Once a second the node
recomputes `connect_urls` (itself plus the reachable peers) and, when it changed, sends
connected clients an async INFO, so a nats-py client given one URL learns the others
and fails over by itself, as with a nats-server cluster.

`status()` is this node's Raft view, answered on `$mq9.AI.NODE.STATUS` and shown by
`mq9 cluster status`.
"""

from __future__ import annotations

import asyncio
import logging
from typing import TYPE_CHECKING

from cluster import keys, records
from cluster.effects import NodeAnnounced
from cluster.replicator import Replicator

if TYPE_CHECKING:
    from node.config import Settings
    from node.nats.server import Server

log = logging.getLogger("mq9.cluster")


class ClusterView:
    def __init__(self, server: "Server", replicator: Replicator, settings: "Settings") -> None:
        self.server = server
        self.replicator = replicator
        self.settings = settings
        self.nodes: dict[str, records.Node] = {}
        self._task: asyncio.Task | None = None

    def start(self) -> None:
        for _, value in self.replicator.store.scan(keys.NODES_PREFIX, keys.end_of(keys.NODES_PREFIX)):
            rec = records.decode_node(value)
            self.nodes[rec.node] = rec
        self.replicator.add_listener(self.on_effects)
        self._task = asyncio.get_running_loop().create_task(self._watch())

    def on_effects(self, index: int, effects: list) -> None:
        for effect in effects:
            if type(effect) is NodeAnnounced:
                old = self.nodes.get(effect.node)
                self.nodes[effect.node] = records.Node(effect.node, "", effect.client_url, effect.name)
                if old is None or old.client_url != effect.client_url:
                    log.info("Node %s (%s) serves clients at %s", effect.name, effect.node, effect.client_url)

    def connect_urls(self) -> list[str]:
        urls = [self.settings.client_url]
        for peer in self.replicator.connected_peers():
            rec = self.nodes.get(peer)
            if rec is not None and rec.client_url and rec.client_url not in urls:
                urls.append(rec.client_url)
        return sorted(urls) if len(urls) > 1 else []

    async def _watch(self) -> None:
        while True:
            try:
                self.server.set_connect_urls(self.connect_urls())
            except Exception:
                log.exception("cluster view")
            await asyncio.sleep(1.0)

    def status(self) -> dict:
        raw = self.replicator.status()
        leader = raw.get("leader")
        peers = []
        for address, connected in raw.get("peers", {}).items():
            rec = self.nodes.get(address)
            peers.append({
                "raft": address, "name": rec.name if rec else "", "client_url": rec.client_url if rec else "",
                "connected": connected, "match_index": raw.get("match_index", {}).get(address),
                "next_index": raw.get("next_index", {}).get(address),
            })
        leader_rec = self.nodes.get(leader) if leader else None
        return {
            "name": self.settings.server_name,
            "raft": self.replicator.raft_address,
            "client_url": self.settings.client_url,
            "state": raw.get("state"),
            "leader": leader,
            "leader_name": leader_rec.name if leader_rec else (self.settings.server_name if leader == self.replicator.raft_address else None),
            "term": raw.get("term"),
            "commit_index": raw.get("commit_index"),
            "applied_index": raw.get("applied_index"),  # Raft's, no-op entries included
            "state_index": self.replicator.state.applied_index,  # the last entry that changed the store
            "applied_digest": self.replicator.state.digest,
            "log_len": raw.get("log_len"),
            "has_quorum": raw.get("has_quorum"),
            "peers": peers,
            "stash_restores": getattr(self.replicator.raft, "stash_restores", 0),
            "next_index_fixes": getattr(self.replicator.raft, "next_index_fixes", 0),
            "log_shrinks": getattr(self.replicator.raft, "log_shrinks", 0),
        }
