"""The web console's server side: its page, and what it does as a NATS client of this node.

The page (`static/`: one HTML file, one script, one stylesheet, no CDN) reads the
monitoring endpoints for the cluster and the mailbox list, and uses two endpoints of
this module for the rest:
- `GET /console/api/mailbox/{mail_id}/stream`: Server-Sent Events, one `message` event
  per message of the mailbox: a plain mq9 subscription, so the stored messages come
  first (highest priority first) and new ones as they commit; nothing is consumed;
- `POST /console/api/answer` `{mail_id, msg_id, ack, reply_to, approved}`: the approval
  inbox's button: sends `{"approved", "reviewer", "msg_id"}` to the `reply_to` mailbox,
  then acknowledges the request (its `ack` subject), so it leaves the mailbox.
Both go through a nats-py connection to this node's own client port, exactly as any
agent's would: the console has no back door into the store. With authentication off
the reviewer is "console"; with it on, a person logs in (`POST /console/api/login`)
with the credentials an agent would use, the node checks them, and the reviewer is
that user. A POST must be `application/json`, which a page of another
origin cannot send without this server's consent (no CORS headers are ever sent), so a
foreign page cannot make a visitor's browser answer requests.
"""

from __future__ import annotations

import asyncio
import json
import logging
import secrets
import time
from pathlib import Path

from aiohttp import web

from node.config import Settings
from node.mq9 import subjects as subj

log = logging.getLogger("mq9.console")

STATIC = Path(__file__).with_name("static")
HEARTBEAT_S = 15.0
REVIEWER = "console"
ACK_PREFIX = "$mq9.AI.ACK."


SESSION_COOKIE = "mq9_console"
SESSION_IDLE_S = 12 * 3600


class Session:
    """A person logged in to the console: who they are, and their NATS connection."""

    __slots__ = ("user", "nc", "seen")

    def __init__(self, user: str, nc) -> None:
        self.user = user
        self.nc = nc
        self.seen = time.monotonic()


class ConsoleClient:
    """The console's NATS connections to this node, as any agent's would be.

    With authentication off, one shared connection and the reviewer "console". With it on
    (the node's users, passwords or token), a person logs in with the same credentials an
    agent would use; the console connects with them (so the node checks them, permissions
    included) and keeps the connection for that person's session, named by a random
    HttpOnly, SameSite=Strict cookie. The reviewer is then the login's user name."""

    def __init__(self, settings: Settings, auth_required, tls_required) -> None:
        host = settings.host if settings.host not in ("", "0.0.0.0", "::") else "127.0.0.1"
        self.url = f"{'[' + host + ']' if ':' in host else host}:{settings.port}"
        self.auth_required = auth_required  # callables: they follow a reload
        self.tls_required = tls_required
        self._shared: Session | None = None
        self._sessions: dict[str, Session] = {}
        self._lock = asyncio.Lock()
        self.streams: set[asyncio.Task] = set()

    async def _connect(self, **credentials):
        import nats  # the console's client, like any agent's

        options = {}
        if self.tls_required():
            import ssl

            context = ssl.create_default_context()
            context.check_hostname = False  # our own node, on its own address
            context.verify_mode = ssl.CERT_NONE
            options["tls"] = context
        scheme = "tls" if options else "nats"
        return await nats.connect(f"{scheme}://{self.url}", name="mq9-console", connect_timeout=3,
                                  max_reconnect_attempts=2, reconnect_time_wait=0.5,
                                  allow_reconnect=True, **credentials, **options)

    async def login(self, user: str, password: str) -> str:
        """Connect with these credentials (user and password, or a token alone); the session id."""
        credentials = {"user": user, "password": password} if user else {"token": password}
        nc = await self._connect(**credentials)
        sid = secrets.token_urlsafe(24)
        self._sessions[sid] = Session(user or "token", nc)
        self._expire()
        log.info("Console: %s logged in", user or "a token holder")
        return sid

    async def logout(self, sid: str) -> None:
        session = self._sessions.pop(sid, None)
        if session is not None and not session.nc.is_closed:
            await session.nc.close()

    def session(self, request) -> Session | None:
        """The caller's session: the shared one with auth off, else the cookie's (or None)."""
        if not self.auth_required():
            return self._shared
        session = self._sessions.get(request.cookies.get(SESSION_COOKIE, ""))
        if session is not None:
            if session.nc.is_closed:  # e.g. the user was removed by a reload
                self._sessions.pop(request.cookies.get(SESSION_COOKIE, ""), None)
                return None
            session.seen = time.monotonic()
        return session

    async def nc_for(self, request):
        """(nats connection, reviewer) for this request, or (None, None) when a login is needed."""
        if self.auth_required():
            session = self.session(request)
            return (session.nc, session.user) if session else (None, None)
        async with self._lock:
            if self._shared is None or self._shared.nc.is_closed:
                self._shared = Session(REVIEWER, await self._connect())
        return self._shared.nc, REVIEWER

    def _expire(self) -> None:
        now = time.monotonic()
        for sid, session in list(self._sessions.items()):
            if now - session.seen > SESSION_IDLE_S:
                self._sessions.pop(sid)
                asyncio.get_running_loop().create_task(session.nc.close())

    async def close(self) -> None:
        for task in list(self.streams):
            task.cancel()
        for session in [self._shared, *self._sessions.values()]:
            if session is not None and not session.nc.is_closed:
                await session.nc.close()


def _event(msg) -> dict:
    headers = msg.headers or {}
    try:
        text, b64 = msg.data.decode(), None
    except UnicodeDecodeError:
        import base64

        text, b64 = None, base64.b64encode(msg.data).decode()
    return {
        "subject": msg.subject,
        "msg_id": headers.get("mq9-msg-id", ""),
        "priority": headers.get("mq9-priority", ""),
        "ts": int(headers.get("mq9-ts", "0") or 0),
        "delivery": int(headers.get("mq9-delivery", "1") or 1),
        "ack": msg.reply,
        "size": len(msg.data),
        "payload": text,
        "payload_b64": b64,
    }


async def index(request: web.Request) -> web.FileResponse:
    return web.FileResponse(STATIC / "index.html", headers={"Cache-Control": "no-cache"})


def make_handlers(client: ConsoleClient):
    async def session(request: web.Request) -> web.Response:
        current = client.session(request) if client.auth_required() else None
        return web.json_response({"auth_required": client.auth_required(),
                                  "user": current.user if current else (None if client.auth_required() else REVIEWER)})

    async def login(request: web.Request) -> web.Response:
        if request.content_type != "application/json":
            return _error(415, "send application/json")
        try:
            body = await request.json()
            user, password = str(body.get("user", "")), str(body["password"])
        except (ValueError, KeyError, TypeError, AttributeError):
            return _error(400, "expected {user, password} (a token goes in password, with no user)")
        try:
            sid = await client.login(user, password)
        except Exception as exc:
            text = str(exc).lower()
            why = "wrong user, password or token" if "authorization" in text or "no servers" in text else str(exc)
            log.warning("Console: login refused for %s", user or "a token")
            return _error(401, f"login refused: {why}")
        response = web.json_response({"user": user or "token"})
        response.set_cookie(SESSION_COOKIE, sid, httponly=True, samesite="Strict", max_age=SESSION_IDLE_S)
        return response

    async def logout(request: web.Request) -> web.Response:
        await client.logout(request.cookies.get(SESSION_COOKIE, ""))
        response = web.json_response({"user": None})
        response.del_cookie(SESSION_COOKIE)
        return response

    async def stream(request: web.Request) -> web.StreamResponse:
        mail_id = request.match_info["mail_id"]
        if not subj.valid_name(mail_id):
            return web.json_response({"error": f"invalid mail id {mail_id!r}", "code": 400}, status=400)
        nc, _ = await client.nc_for(request)
        if nc is None:
            return _error(401, "log in first")
        sub = await nc.subscribe(f"$mq9.AI.MAILBOX.MSG.{mail_id}.*")
        resp = web.StreamResponse(headers={"Content-Type": "text/event-stream", "Cache-Control": "no-cache",
                                           "X-Accel-Buffering": "no"})
        await resp.prepare(request)
        task = asyncio.current_task()
        client.streams.add(task)
        try:
            await resp.write(b": stream of " + mail_id.encode() + b"\n\n")
            while True:
                try:
                    msg = await sub.next_msg(timeout=HEARTBEAT_S)
                except TimeoutError:  # nats-py's TimeoutError is one too
                    await resp.write(b": keep-alive\n\n")
                    continue
                await resp.write(b"event: message\ndata: " + json.dumps(_event(msg)).encode() + b"\n\n")
        except (ConnectionResetError, asyncio.CancelledError):
            pass
        finally:
            client.streams.discard(task)
            try:
                await sub.unsubscribe()
            except Exception:
                pass
        return resp

    async def answer(request: web.Request) -> web.Response:
        if request.content_type != "application/json":
            return _error(415, "send application/json")
        try:
            body = await request.json()
            mail_id, msg_id, ack, reply_to = (str(body[k]) for k in ("mail_id", "msg_id", "ack", "reply_to"))
            approved = body["approved"]
        except (ValueError, KeyError, TypeError):
            return _error(400, "expected {mail_id, msg_id, ack, reply_to, approved}")
        if type(approved) is not bool:
            return _error(400, "approved is true or false")
        if not subj.valid_name(reply_to):
            return _error(400, f"reply_to {reply_to!r} is not a mail id")
        if not ack.startswith(ACK_PREFIX) or not ack.endswith("." + mail_id):
            return _error(400, "ack is not this message's acknowledgement subject")
        nc, reviewer = await client.nc_for(request)
        if nc is None:
            return _error(401, "log in first")
        answer_body = json.dumps({"approved": approved, "reviewer": reviewer, "msg_id": msg_id}).encode()
        sent = await _request(nc, f"$mq9.AI.MAILBOX.MSG.{reply_to}", answer_body)
        if "error" in sent:
            return _error(sent.get("code", 502), f"answer not sent: {sent['error']}")
        acked = await _request(nc, ack, b"")
        if "error" in acked:
            return _error(acked.get("code", 502), f"answer sent (msg_id {sent.get('msg_id')}), "
                                                  f"but the request was not acknowledged: {acked['error']}")
        log.info("Console: %s %s %s/%s, answer %s sent to %s", reviewer, "approved" if approved else "rejected",
                 mail_id, msg_id, sent.get("msg_id"), reply_to)
        return web.json_response({"sent": sent.get("msg_id"), "acked": True})

    return {"session": session, "login": login, "logout": logout, "stream": stream, "answer": answer}


async def _request(nc, subject: str, body: bytes) -> dict:
    from nats.errors import NoRespondersError, TimeoutError as NatsTimeout

    try:
        msg = await nc.request(subject, body, timeout=5)
    except NatsTimeout:
        return {"error": "no reply within 5 s", "code": 504}
    except NoRespondersError:
        return {"error": "no responders", "code": 503}
    try:
        return json.loads(msg.data) if msg.data else {}
    except ValueError:
        return {"error": "reply is not JSON", "code": 502}


def _error(code: int, text: str) -> web.Response:
    return web.json_response({"error": text, "code": code}, status=code)
