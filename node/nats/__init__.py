"""The NATS client protocol and core NATS: what a nats-server does for plain subjects.

Owns the sans-IO parser and its typed ops, the `-ERR` table, wire encoders, subject
validation and the sublist, one asyncio Protocol per client (`connection`), the
listener and client registry (`server`), core publish/subscribe (`router`), and the
routes that carry core NATS between nodes (`routes`, `route_parser`).

May import: `node.config` and the standard library. Never `node.mq9` (the server
hands `$mq9.AI.*` subjects to a `MailboxAPI` it is given) nor `cluster`. The parser,
ops, errors, subjects and wire modules are sans-IO: no asyncio, no sockets.
"""
