"""Who may connect and what they may do: identities, permissions, limits, the config file.

Owns the `[authorization]`, `[limits]` and `[tls]` parts of the node's TOML config
(`config`), subject permissions with NATS wildcards (`permissions`), and checking a
CONNECT's credentials against tokens, passwords (plain or bcrypt) and nkeys
(`identity`). `node.nats` asks it at CONNECT, on every PUB/HPUB and on every SUB; mq9
requests are subjects, so the same permissions govern them.

May import: `node.config` and the standard library (plus bcrypt and nkeys). Nothing of
`node.nats`, `node.mq9` or `cluster`: it decides, the callers enforce.
"""
