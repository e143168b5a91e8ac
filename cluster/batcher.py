"""Group commit: many client commands, one Raft entry.

Commands arrive on the event loop one by one; the batcher collects them and hands a
list to `send` when any of these holds:
- the batch reached `max_commands` or `max_bytes`;
- fewer than `max_in_flight` batches are waiting for commit: at the end of this loop
  pass, so everything one read of a socket produced travels together;
- otherwise, when a batch commits, or after `linger_s` (about a millisecond), whichever
  comes first, never exceeding `hard_in_flight`.
Under light load a command therefore goes out at once (no added latency); under heavy
load batches grow, but never past `max_commands` or `max_bytes`: what queued behind is
sent as further batches as earlier ones commit. (A batch that took the whole queue grew
to tens of MiB under a wide window of large messages: one Raft entry that blocked every
node's loop for seconds and cost the leader its leadership.)
`send` also gets when the batch's first command came, so the replicator can tell how
long a store waited in all (the store latency of the metrics).
"""

from __future__ import annotations

import asyncio
import time
from typing import Callable

from cluster.commands import Command, encoded_size


class Batcher:
    """Collects commands on the loop and sends them in batches."""

    def __init__(
        self,
        loop: asyncio.AbstractEventLoop,
        send: Callable[[list[Command], list[Callable], float], None],
        max_commands: int = 1024,
        max_bytes: int = 1 << 20,
        max_in_flight: int = 2,
        hard_in_flight: int = 8,
        linger_s: float = 0.001,
    ) -> None:
        self._loop = loop
        self._send = send
        self.max_commands = max_commands
        self.max_bytes = max_bytes
        self.max_in_flight = max_in_flight
        self.hard_in_flight = hard_in_flight
        self.linger_s = linger_s
        self.in_flight = 0
        self._commands: list[Command] = []
        self._callbacks: list[Callable] = []  # one per command, called with its Result
        self._sizes: list[int] = []  # encoded_size of each queued command
        self._bytes = 0
        self._opened = 0.0  # when the first command of the open batch came (time.monotonic)
        self._scheduled: asyncio.Handle | asyncio.TimerHandle | None = None
        self.batches_sent = 0
        self.commands_sent = 0

    def add(self, command: Command, callback: Callable) -> None:
        if not self._commands:
            self._opened = time.monotonic()
        self._commands.append(command)
        self._callbacks.append(callback)
        size = encoded_size(command)
        self._sizes.append(size)
        self._bytes += size
        if len(self._commands) >= self.max_commands or self._bytes >= self.max_bytes:
            if self.in_flight < self.hard_in_flight:
                self.flush()
                return
        if self._scheduled is None:
            if self.in_flight < self.max_in_flight:
                self._scheduled = self._loop.call_soon(self._timer_flush)
            else:
                self._scheduled = self._loop.call_later(self.linger_s, self._timer_flush)

    def _timer_flush(self) -> None:
        self._scheduled = None
        if self.in_flight < self.hard_in_flight:
            self.flush()

    def flush(self) -> None:
        if self._scheduled is not None:
            self._scheduled.cancel()
            self._scheduled = None
        if not self._commands:
            return
        take, total, sizes = 0, 0, self._sizes
        limit = min(len(sizes), self.max_commands)
        while take < limit and (take == 0 or total + sizes[take] <= self.max_bytes):
            total += sizes[take]
            take += 1
        if take == len(self._commands):
            commands, callbacks = self._commands, self._callbacks
            self._commands, self._callbacks, self._sizes, self._bytes = [], [], [], 0
        else:  # a backlog: one bounded batch now, the rest as batches commit
            commands, callbacks = self._commands[:take], self._callbacks[:take]
            del self._commands[:take], self._callbacks[:take], self._sizes[:take]
            self._bytes -= total
            self._opened = time.monotonic()
        self.in_flight += 1
        self.batches_sent += 1
        self.commands_sent += len(commands)
        self._send(commands, callbacks, self._opened)

    def fail_queued(self, result) -> int:
        """Answer every command still queued with `result` (a 503: the cluster cannot take
        writes now, so they would only wait their turn to fail). Returns how many."""
        callbacks = self._callbacks
        self._commands, self._callbacks, self._sizes, self._bytes = [], [], [], 0
        if self._scheduled is not None:
            self._scheduled.cancel()
            self._scheduled = None
        for callback in callbacks:
            try:
                callback(result)
            except Exception:  # a client's callback must not stop the others
                pass
        return len(callbacks)

    def done(self) -> None:
        """A batch committed or failed: send what queued behind it (full batches while
        fewer than `hard_in_flight` are out, the rest as usual)."""
        self.in_flight -= 1
        while self._commands and (self.in_flight < self.max_in_flight or (
                self.in_flight < self.hard_in_flight and
                (len(self._commands) >= self.max_commands or self._bytes >= self.max_bytes))):
            self.flush()
