"""The one table of nats-server's `-ERR` texts, each marked fatal (close after sending) or not.

The words are nats-server's own (server/client.go, server/parser.go, server/errors.go), so
clients that match on them (nats-py closes on every `-ERR` except permission violations)
behave as they do against nats-server. Nothing else in the node spells an `-ERR` text.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class NatsError:
    """One `-ERR` line. `fatal` means nats-server closes the connection after sending it."""

    text: str
    fatal: bool

    def line(self, *args: object) -> bytes:
        """The wire line, with `{}` placeholders in `text` filled from args."""
        return b"-ERR '" + self.text.format(*args).encode() + b"'\r\n"


UNKNOWN_PROTOCOL = NatsError("Unknown Protocol Operation", fatal=True)
MAX_PAYLOAD = NatsError("Maximum Payload Violation", fatal=True)
MAX_CONTROL_LINE = NatsError("maximum control line exceeded", fatal=True)  # lower case, as sent
MAX_CONNECTIONS = NatsError("maximum connections exceeded", fatal=True)
AUTHORIZATION = NatsError("Authorization Violation", fatal=True)
STALE_CONNECTION = NatsError("Stale Connection", fatal=True)
SLOW_CONSUMER = NatsError("Slow Consumer", fatal=True)
INVALID_SUBJECT = NatsError("Invalid Subject", fatal=False)
INVALID_PUBLISH_SUBJECT = NatsError("Invalid Publish Subject", fatal=False)
NO_HEADERS = NatsError("Headers Not Supported", fatal=True)
PERMISSION_SUB = NatsError('Permissions Violation for Subscription to "{}"', fatal=False)
PERMISSION_PUB = NatsError('Permissions Violation for Publish to "{}"', fatal=False)
