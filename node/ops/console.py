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
the reviewer is "console". A POST must be `application/json`, which a page of another
origin cannot send without this server's consent (no CORS headers are ever sent), so a
foreign page cannot make a visitor's browser answer requests.
"""

from __future__ import annotations

import asyncio
import json
import logging
from pathlib import Path

from aiohttp import web

from node.config import Settings
from node.mq9 import subjects as subj

log = logging.getLogger("mq9.console")

STATIC = Path(__file__).with_name("static")
HEARTBEAT_S = 15.0
REVIEWER = "console"
ACK_PREFIX = "$mq9.AI.ACK."


class ConsoleClient:
    """One shared nats-py connection to this node, made on first use."""

    def __init__(self, settings: Settings) -> None:
        host = settings.host if settings.host not in ("", "0.0.0.0", "::") else "127.0.0.1"
        self.url = f"nats://{'[' + host + ']' if ':' in host else host}:{settings.port}"
        self._nc = None
        self._lock = asyncio.Lock()
        self.streams: set[asyncio.Task] = set()

    async def nc(self):
        async with self._lock:
            if self._nc is None or self._nc.is_closed:
                import nats  # the console's client, like any agent's

                self._nc = await nats.connect(self.url, name="mq9-console", connect_timeout=3,
                                              max_reconnect_attempts=-1, reconnect_time_wait=0.5)
            return self._nc

    async def close(self) -> None:
        for task in list(self.streams):
            task.cancel()
        if self._nc is not None and not self._nc.is_closed:
            await self._nc.close()


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
    async def stream(request: web.Request) -> web.StreamResponse:
        mail_id = request.match_info["mail_id"]
        if not subj.valid_name(mail_id):
            return web.json_response({"error": f"invalid mail id {mail_id!r}", "code": 400}, status=400)
        nc = await client.nc()
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
        nc = await client.nc()
        answer_body = json.dumps({"approved": approved, "reviewer": REVIEWER, "msg_id": msg_id}).encode()
        sent = await _request(nc, f"$mq9.AI.MAILBOX.MSG.{reply_to}", answer_body)
        if "error" in sent:
            return _error(sent.get("code", 502), f"answer not sent: {sent['error']}")
        acked = await _request(nc, ack, b"")
        if "error" in acked:
            return _error(acked.get("code", 502), f"answer sent (msg_id {sent.get('msg_id')}), "
                                                  f"but the request was not acknowledged: {acked['error']}")
        log.info("Console: %s %s/%s, answer %s sent to %s", "approved" if approved else "rejected",
                 mail_id, msg_id, sent.get("msg_id"), reply_to)
        return web.json_response({"sent": sent.get("msg_id"), "acked": True})

    return stream, answer


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
