"""Assemble one node's parts and run them until SIGTERM or SIGINT.

The order is the data path's: the NATS front end (`Server`) first, so the client port
answers as soon as possible, then the replicated store and the mq9 API on top of it,
routes, and last the monitoring port (`--monitor`), which reads all of them.
On a signal the node drains: the listener closes, started writes finish, clients are
flushed and closed, then the store shuts down.
"""

from __future__ import annotations

import asyncio
import gc
import logging
import os
import signal

import uvloop

from cluster.replicator import Replicator
from node.auth import config as security_config
from node.mq9.cluster_view import ClusterView
from node.config import Settings
from node.mq9.api import MailboxAPI
from node.nats.routes import RouteManager
from node.nats.server import Server
from node.ops.monitor import Monitor
from node.ops.parts import NodeParts

log = logging.getLogger("mq9.node")


async def serve(settings: Settings, ready: asyncio.Event | None = None) -> None:
    """Run a node until a stop signal; then drain and return."""
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    holder: dict = {}
    loop.add_signal_handler(signal.SIGHUP, lambda: _reload(settings, holder.get("server")))
    security = security_config.load(settings)  # a bad config file stops the node here, before any port opens
    replicator = Replicator(
        settings.data_dir, settings.raft_address, list(settings.peers), settings.cluster_secret,
        settings.write_timeout_s, settings.tick_interval_s, settings.client_url, settings.server_name,
        compact_min_entries=settings.compact_min_entries, compact_min_time_s=settings.compact_min_time_s,
    )
    replicator.start()
    pid_file = os.path.join(settings.data_dir, "mq9.pid")  # for `mq9 reload`
    with open(pid_file, "w") as f:
        f.write(f"{os.getpid()}\n")
    server = Server(settings, security)
    holder["server"] = server
    view = ClusterView(server, replicator, settings)
    api = server.mq9 = MailboxAPI(server, replicator, settings, view)
    # last listener: what an applied entry produced (replies, deliveries) leaves now, before
    # the leader's next Raft sends (cluster/raft.py defers those by a loop pass)
    replicator.add_listener(lambda _index, _effects: server.flush_dirty())
    await server.start()
    view.start()
    routes = RouteManager(server, replicator.node_id, settings.route_listen, settings.route_peers(),
                          settings.cluster_secret)
    await routes.start()
    monitor = None
    if settings.monitor_listen is not None:
        monitor = Monitor(NodeParts(settings, server, replicator, view, api, routes))
        await monitor.start()
    log.info("Server %s is ready", settings.server_name)
    _tune_gc()
    if ready is not None:
        ready.set()
    await stop.wait()
    log.info("Signal received, draining")
    if monitor is not None:
        await monitor.stop()
    await routes.stop()
    await server.drain()
    await replicator.stop()
    try:
        os.unlink(pid_file)
    except OSError:
        pass
    log.info("Server exiting")


def _reload(settings: Settings, server: Server | None) -> None:
    """SIGHUP (`mq9 reload`): read the config file again; users, permissions and limits
    change for new and existing connections. A file that does not parse changes nothing."""
    if server is None:
        return
    try:
        security = security_config.load(settings)
    except security_config.ConfigError as exc:
        log.error("Reload refused, the old configuration stays: %s", exc)
        return
    server.reload(security)
    log.info("Reloaded %s: %d users, token %s, max_connections %s, max_subscriptions %s",
             settings.config_file or "the flags", len(security.authenticator.users) + len(security.authenticator.nkeys),
             "set" if security.authenticator.token else "not set", security.limits.max_connections or "unlimited",
             security.limits.max_subscriptions or "unlimited")


GC_GEN0 = 50_000  # allocations between young collections (Python's default: 700)


def _tune_gc() -> None:
    """Fewer, cheaper garbage collections once the node is up.

    Every publish and ack allocates a few container objects that live until their batch
    commits, so with Python's defaults the collector ran hundreds of young and several
    full collections per 20,000 tasks: 5-14% of a node's CPU in the work-queue benchmark
    (measured with gc.callbacks). Freezing what startup allocated keeps full collections
    from walking it, and a larger young generation makes collections rare. Cycles are
    still collected. `MQ9_GC_GEN0=700` restores the default threshold.
    """
    raw = os.environ.get("MQ9_GC_GEN0", "")
    try:
        gen0 = int(raw) if raw else GC_GEN0
        if gen0 < 1:
            raise ValueError
    except ValueError:
        log.warning("MQ9_GC_GEN0=%r is not a positive number; using %d", raw, GC_GEN0)
        gen0 = GC_GEN0
    gc.freeze()
    gc.set_threshold(gen0, 20, 20)


def run(settings: Settings) -> None:
    """Blocking entry point used by the CLI."""
    uvloop.run(serve(settings))
