"""Prometheus metrics (`/metrics`), in the text format, with the official prometheus-client.

Two kinds, in one registry per node:
- read at scrape time from the node's own counters (no work on the data path): client
  connections and traffic, subscriptions, slow consumers, stored mailboxes, messages
  and bytes (from the census), acks, redeliveries, and Raft's term, commit and applied
  index, lag and role;
- histograms fed once per applied Raft entry (`Replicator.add_batch_observer`), never
  per message: commands per entry, commit latency (this node's entries, handed to
  Raft -> applied here) and store latency (first command of the entry queued ->
  applied, which is what a client waits, less the network).
All names start with `mq9_`; counters end in `_total`, as Prometheus expects. The
process collector adds `process_cpu_seconds_total`, `process_resident_memory_bytes`...
"""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Histogram, ProcessCollector, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily

from cluster import commands as c
from cluster.effects import MessageAssigned
from node.ops.parts import NodeParts

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
LATENCY_BUCKETS = (0.0005, 0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0)
BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024, 4096)


class NodeCollector:
    """Builds the scrape-time families from a node's parts."""

    def __init__(self, parts: NodeParts, redeliveries: list[int]) -> None:
        self.parts = parts
        self.redeliveries = redeliveries

    def collect(self):
        p = self.parts
        server, census = p.server, p.census.last
        m_in, m_out, b_in, b_out = server.traffic()
        yield _gauge("mq9_connections", "Client connections open now", len(server.clients))
        yield _counter("mq9_connections_accepted", "Client connections accepted since start", server.total_connections)
        yield _counter("mq9_in_messages", "Messages published by clients of this node", m_in)
        yield _counter("mq9_out_messages", "Messages delivered to clients of this node", m_out)
        yield _counter("mq9_in_bytes", "Bytes read from clients (protocol included)", b_in)
        yield _counter("mq9_out_bytes", "Bytes written to clients (protocol included)", b_out)
        yield _gauge("mq9_subscriptions", "Client subscriptions on this node",
                     sum(len(cl.subs) for cl in server.clients.values()))
        yield _counter("mq9_slow_consumers", "Clients cut off as slow consumers", server.slow_consumers)
        yield _gauge("mq9_mailboxes", "Mailboxes stored (census)", census.mailboxes)
        stored = GaugeMetricFamily("mq9_stored_messages", "Messages stored, by priority level (census)",
                                   labels=["priority"])
        for level, name in enumerate(c.LEVEL_NAMES):
            stored.add_metric([name], sum(count.by_level[level] for count in census.per_mailbox.values()))
        yield stored
        yield _gauge("mq9_stored_bytes", "Bytes of stored messages (census)", census.bytes)
        yield _gauge("mq9_census_timestamp_seconds", "When the census behind the stored figures was taken",
                     census.taken_at)
        yield _counter("mq9_acks", "Acknowledgements received from clients of this node", p.api.acks)
        yield _counter("mq9_redeliveries", "Messages handed to a queue-group member again (cluster-wide, as applied here)",
                       self.redeliveries[0])
        status = p.replicator.status()
        commit, applied = status.get("commit_index") or 0, status.get("applied_index") or 0
        yield _gauge("mq9_raft_term", "Raft term", status.get("term") or 0)
        yield _gauge("mq9_raft_commit_index", "Raft commit index", commit)
        yield _gauge("mq9_raft_applied_index", "Raft index applied here", applied)
        yield _gauge("mq9_raft_apply_lag", "Committed entries not yet applied here", max(0, commit - applied))
        yield _gauge("mq9_raft_leader", "1 if this node is the Raft leader", 1 if status.get("state") == "leader" else 0)
        yield _gauge("mq9_raft_quorum", "1 if a write sent now would reach a leader with a majority",
                     1 if p.replicator.raft is not None and p.replicator.raft.can_accept_writes(contact_s=2.0) else 0)
        lag = GaugeMetricFamily("mq9_raft_peer_lag", "Entries a peer is behind the leader's commit (leader only)",
                                labels=["peer"])
        if status.get("state") == "leader":
            for peer, match in sorted(status.get("match_index", {}).items()):
                if match is not None:
                    lag.add_metric([peer], max(0, commit - match))
        yield lag


def _gauge(name: str, doc: str, value: float) -> GaugeMetricFamily:
    return GaugeMetricFamily(name, doc, value=value)


def _counter(name: str, doc: str, value: float) -> CounterMetricFamily:
    return CounterMetricFamily(name, doc, value=value)


class Metrics:
    """One node's registry: its collector, the process collector and three histograms."""

    def __init__(self, parts: NodeParts) -> None:
        self.registry = CollectorRegistry(auto_describe=False)
        self.redeliveries = [0]
        self.registry.register(NodeCollector(parts, self.redeliveries))
        ProcessCollector(registry=self.registry)
        self.batch_commands = Histogram("mq9_apply_batch_commands", "Commands per applied Raft entry",
                                        buckets=BATCH_BUCKETS, registry=self.registry)
        self.commit_latency = Histogram("mq9_commit_latency_seconds",
                                        "This node's Raft entries: handed to Raft -> applied here",
                                        buckets=LATENCY_BUCKETS, registry=self.registry)
        self.store_latency = Histogram("mq9_store_latency_seconds",
                                       "This node's writes: first command of the entry queued -> applied here",
                                       buckets=LATENCY_BUCKETS, registry=self.registry)
        parts.replicator.add_batch_observer(self.on_batch)
        parts.replicator.add_listener(self.on_effects)

    def on_batch(self, commands: int, commit_s: float | None, store_s: float | None) -> None:
        self.batch_commands.observe(commands)
        if commit_s is not None:
            self.commit_latency.observe(commit_s)
            self.store_latency.observe(store_s)

    def on_effects(self, index: int, effects: list) -> None:
        n = 0
        for effect in effects:
            if type(effect) is MessageAssigned and effect.delivery > 1:
                n += 1
        if n:
            self.redeliveries[0] += n

    def render(self) -> bytes:
        return generate_latest(self.registry)
