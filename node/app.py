"""Assemble one node's parts and run them until SIGTERM or SIGINT.

The order is the data path's: the NATS front end (`Server`) first, so the client port
answers as soon as possible, then the replicated store and the mq9 API on top of it.
On a signal the node drains: the listener closes, started writes finish, clients are
flushed and closed, then the store shuts down.
"""

from __future__ import annotations

import asyncio
import logging
import signal

import uvloop

from cluster.replicator import Replicator
from node.cluster_view import ClusterView
from node.config import Settings
from node.mq9 import MailboxAPI
from node.routes import RouteManager
from node.server import Server

log = logging.getLogger("mq9.node")


async def serve(settings: Settings, ready: asyncio.Event | None = None) -> None:
    """Run a node until a stop signal; then drain and return."""
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    replicator = Replicator(
        settings.data_dir, settings.raft_address, list(settings.peers), settings.cluster_secret,
        settings.write_timeout_s, settings.tick_interval_s, settings.client_url, settings.server_name,
        compact_min_entries=settings.compact_min_entries, compact_min_time_s=settings.compact_min_time_s,
    )
    replicator.start()
    server = Server(settings)
    view = ClusterView(server, replicator, settings)
    server.mq9 = MailboxAPI(server, replicator, settings, view)
    await server.start()
    view.start()
    routes = RouteManager(server, replicator.node_id, settings.route_listen, settings.route_peers(),
                          settings.cluster_secret)
    await routes.start()
    log.info("Server %s is ready", settings.server_name)
    if ready is not None:
        ready.set()
    await stop.wait()
    log.info("Signal received, draining")
    await routes.stop()
    await server.drain()
    await replicator.stop()
    log.info("Server exiting")


def run(settings: Settings) -> None:
    """Blocking entry point used by the CLI."""
    uvloop.run(serve(settings))
