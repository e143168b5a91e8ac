"""The monitoring port: one aiohttp server on the node's own event loop.

`--monitor HOST:PORT` (off by default; 8222 by nats-server's convention) binds exactly
that host. Routes:

    /healthz /varz /connz /subsz /routez   nats-server's endpoints (nats_endpoints.py)
    /raftz /mailboxz                        mq9's own (mq9_endpoints.py)
    /metrics                                Prometheus text format (metrics.py)
    /                                       the web console (console.py, static/)

JSON is indented like nats-server's. Handlers only read the node's state (the console
writes as a NATS client); none blocks the loop for long: the census walks the store in
chunks, everything else is in memory.
"""

from __future__ import annotations

import json
import logging

from aiohttp import web

from node.ops import mq9_endpoints, nats_endpoints
from node.ops.console import STATIC, ConsoleClient, index, make_handlers
from node.ops.metrics import CONTENT_TYPE, Metrics
from node.ops.parts import NodeParts

log = logging.getLogger("mq9.monitor")


def _json(body: dict, status: int = 200) -> web.Response:
    return web.Response(text=json.dumps(body, indent=2) + "\n", status=status, content_type="application/json",
                        headers={"Cache-Control": "no-cache"})


class Monitor:
    """The HTTP monitoring server of one node."""

    def __init__(self, parts: NodeParts) -> None:
        self.parts = parts
        self.metrics = Metrics(parts)
        server = parts.server
        self.console = ConsoleClient(parts.settings, lambda: server.security.authenticator.required,
                                     lambda: server.tls_context is not None)
        self._runner: web.AppRunner | None = None
        self.address: tuple[str, int] | None = None

    def app(self) -> web.Application:
        p = self.parts
        console = make_handlers(self.console)

        async def healthz(request: web.Request) -> web.Response:
            code, body = nats_endpoints.healthz(p)
            return _json(body, code)

        async def varz(request: web.Request) -> web.Response:
            return _json(nats_endpoints.varz(p))

        async def connz(request: web.Request) -> web.Response:
            code, body = nats_endpoints.connz(p, request.query)
            return _json(body, code)

        async def subsz(request: web.Request) -> web.Response:
            return _json(nats_endpoints.subsz(p, request.query))

        async def routez(request: web.Request) -> web.Response:
            return _json(nats_endpoints.routez(p))

        async def raftz(request: web.Request) -> web.Response:
            return _json(mq9_endpoints.raftz(p))

        async def mailboxz(request: web.Request) -> web.Response:
            code, body = await mq9_endpoints.mailboxz(p, request.query)
            return _json(body, code)

        async def metrics(request: web.Request) -> web.Response:
            await p.census.current()  # starts a new count when the last is old; never waits for one but the first
            return web.Response(body=self.metrics.render(), headers={"Content-Type": CONTENT_TYPE})

        app = web.Application()
        app.add_routes([
            web.get("/healthz", healthz), web.get("/varz", varz), web.get("/connz", connz),
            web.get("/subsz", subsz), web.get("/routez", routez), web.get("/raftz", raftz),
            web.get("/mailboxz", mailboxz), web.get("/metrics", metrics),
            web.get("/", index), web.static("/static", STATIC),
            web.get("/console/api/session", console["session"]),
            web.post("/console/api/login", console["login"]),
            web.post("/console/api/logout", console["logout"]),
            web.get("/console/api/mailbox/{mail_id}/stream", console["stream"]),
            web.post("/console/api/answer", console["answer"]),
        ])
        return app

    async def start(self) -> None:
        host, port = self.parts.settings.monitor_listen
        self._runner = web.AppRunner(self.app(), access_log=None, handle_signals=False)
        await self._runner.setup()
        site = web.TCPSite(self._runner, host, port, reuse_address=True)
        await site.start()
        self.address = (host, port)
        log.info("Starting http monitor on http://%s:%d (console at /)", host, port)

    async def stop(self) -> None:
        await self.console.close()
        if self._runner is not None:
            await self._runner.cleanup()
