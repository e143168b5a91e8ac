"""A cluster's Raft status over NATS: one agreed leader, convergence, what each node lists.

Every node answers `$mq9.AI.NODE.STATUS` with its Raft view (state, leader, term,
commit and applied indexes, the digest of what it applied). This module asks over
nats-py, as any client would, so it works the same on processes of this machine and on
containers behind published ports. Callers name their nodes with any keys (node
objects, service names) mapped to client URLs, and get those keys back.

  - one leader: exactly one node says it leads, and every node names that node's Raft
    address as its leader (with `quorum`, the leader also says it has a majority);
  - converged: every node applied the same index, of Raft's log and of ours, and has
    applied all it committed; then the applied digests must be equal and no Raft log
    may have shrunk (a log drops entries only on a term conflict): either would be a
    replication bug, so it fails at once instead of being waited out.

A node that does not answer counts as "not yet"; the waits poll until their deadline.
"""

from __future__ import annotations

import json
from typing import Callable, Hashable, Mapping, TypeVar, Union

import nats

from harness import HarnessError
from harness.waiting import wait_for

K = TypeVar("K", bound=Hashable)
Urls = Union[Mapping[K, str], Callable[[], Mapping[K, str]]]  # a callable is re-read at each poll


async def _quiet(exc: Exception) -> None:
    """nats-py prints every connection error by default; a node that is down is expected here."""


async def connect(url: str):
    """One connection to this node, no reconnects: a status is a question to this node, not to any.

    One retry, 0.2 s later, and then a failure the caller's wait retries: nats-py takes
    max_reconnect_attempts=0 as "retry the first connect forever", which would hold a
    poll past its deadline while a node is down."""
    return await nats.connect(url, connect_timeout=2, allow_reconnect=False, max_reconnect_attempts=1,
                              reconnect_time_wait=0.2, error_cb=_quiet)


async def request(nc, subject: str, body: bytes | dict = b"", timeout: float = 5.0, headers=None) -> dict:
    """A request with a JSON reply (a dict body is sent as JSON)."""
    if isinstance(body, dict):
        body = json.dumps(body).encode()
    msg = await nc.request(subject, body, timeout=timeout, headers=headers)
    return json.loads(msg.data)


async def status(url: str, timeout: float = 2.0) -> dict:
    nc = await connect(url)
    try:
        return await request(nc, "$mq9.AI.NODE.STATUS", timeout=timeout)
    finally:
        await nc.close()


async def statuses(urls: Mapping[K, str], timeout: float = 2.0) -> dict[K, dict | None]:
    """Each node's status, None for one that did not answer."""
    out: dict[K, dict | None] = {}
    for key, url in urls.items():
        try:
            out[key] = await status(url, timeout)
        except Exception:
            out[key] = None
    return out


def leader_in(views: Mapping[K, dict | None], quorum: bool = False) -> K | None:
    """The node every view agrees leads, or None."""
    if not views or any(v is None for v in views.values()):
        return None
    leaders = [k for k, v in views.items() if v["state"] == "leader" and (not quorum or v["has_quorum"])]
    if len(leaders) != 1:
        return None
    address = views[leaders[0]]["raft"]
    return leaders[0] if all(v["leader"] == address for v in views.values()) else None


def converged_in(views: Mapping[K, dict | None]) -> bool:
    if not views or any(v is None for v in views.values()):
        return False
    vs = list(views.values())
    return (len({v["applied_index"] for v in vs}) == 1 and len({v["state_index"] for v in vs}) == 1
            and all(v["commit_index"] == v["applied_index"] for v in vs))


def check_same_log(views: Mapping[K, dict]) -> None:
    """Converged nodes must have applied the same entries, and no Raft log may have shrunk."""
    if len({v["applied_digest"] for v in views.values()}) != 1:
        raise HarnessError(f"same applied index, different applied logs: {dict(views)}")
    shrinks = {k: v["log_shrinks"] for k, v in views.items() if v.get("log_shrinks")}
    if shrinks:
        raise HarnessError(f"Raft logs shrank without a conflict: {shrinks}")


def _current(urls: Urls) -> Mapping:
    return urls() if callable(urls) else urls


async def wait_leader(urls: Urls, timeout: float = 15.0, *, quorum: bool = False, interval: float = 0.02,
                      what: str = "one agreed leader"):
    """The key of the node all the given nodes agree leads (waits for one)."""
    async def agreed():
        return leader_in(await statuses(_current(urls)), quorum)
    return await wait_for(agreed, timeout, what, interval)


async def wait_converged(urls: Urls, timeout: float = 30.0, *, interval: float = 0.1,
                         what: str = "all nodes to apply the same index") -> dict:
    """Each node's status once all applied the same index; fails if their logs differ."""
    async def same():
        views = await statuses(_current(urls))
        return views if converged_in(views) else None
    views = await wait_for(same, timeout, what, interval)
    check_same_log(views)
    return views


async def list_ids(nc, mail_id: str, node: str = "") -> list[str]:
    """The msg ids MAILBOX.LIST gives for one mailbox on nc's node (named `node` in errors),
    paging through long lists."""
    ids: list[str] = []
    body: dict = {}
    while True:
        reply = await request(nc, f"$mq9.AI.MAILBOX.LIST.{mail_id}", body, timeout=5)
        if "error" in reply:
            raise HarnessError(f"LIST {mail_id}{f' on {node}' if node else ''}: {reply}")
        ids += [m["msg_id"] for m in reply["messages"]]
        if not reply.get("truncated"):
            return ids
        body = {"after": ids[-1]}
