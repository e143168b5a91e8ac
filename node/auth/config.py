"""The node's security settings: flags and `MQ9_*` variables, and the TOML file (`--config`).

The file's sections follow nats-server's configuration, in TOML:

    [authorization]
    token = "s3cr3t"                         # or a bcrypt hash
    timeout = 2.0                            # seconds to send CONNECT once auth is required
    [[authorization.users]]
    user = "alice"
    password = "$2b$12$..."                  # bcrypt (or plain)
    permissions.publish = { allow = ["$mq9.AI.>", "_INBOX.>"], deny = [] }
    permissions.subscribe = { allow = [">"] }
    [[authorization.users]]
    nkey = "UD..."                           # an nkey user (signs INFO's nonce)
    [limits]
    max_connections = 1000
    max_subscriptions = 500                  # per connection
    [tls]
    cert = "server.pem"
    key = "server-key.pem"
    ca = "ca.pem"                            # with verify: client certificates required
    verify = true

Flags win over the file (`--auth`, `--user`/`--pass`, `--max-connections`,
`--max-subscriptions`, `--tls-*`). The file is read at start and again on SIGHUP
(`mq9 reload`): users, permissions and limits change without a restart; TLS files are
read at start only. A file that does not parse is refused with one line saying where.
"""

from __future__ import annotations

import tomllib
from dataclasses import dataclass, field

from node.auth.identity import Authenticator, User
from node.auth.permissions import Permissions
from node.config import Settings

DEFAULT_AUTH_TIMEOUT_S = 2.0


@dataclass(frozen=True)
class Limits:
    max_connections: int = 0  # 0: no limit
    max_subscriptions: int = 0  # per connection; 0: no limit


@dataclass(frozen=True)
class Tls:
    cert: str
    key: str
    ca: str = ""
    verify: bool = False  # require a client certificate signed by `ca`


@dataclass(frozen=True)
class Security:
    """What CONNECT, PUB and SUB are checked against; replaced whole on reload."""

    authenticator: Authenticator = field(default_factory=Authenticator)
    limits: Limits = field(default_factory=Limits)
    auth_timeout_s: float = DEFAULT_AUTH_TIMEOUT_S
    tls: Tls | None = None


class ConfigError(ValueError):
    """The config file or a security flag is wrong; the message says where."""


def read_file(path: str) -> dict:
    try:
        with open(path, "rb") as f:
            return tomllib.load(f)
    except OSError as exc:
        raise ConfigError(f"config file {path}: {exc.strerror or exc}") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"config file {path}: {exc}") from None


def _users(raw: list, path: str) -> tuple[User, ...]:
    out = []
    for i, entry in enumerate(raw):
        where = f"{path}: authorization.users[{i}]"
        if not isinstance(entry, dict):
            raise ConfigError(f"{where}: expected a table")
        name, nkey = str(entry.get("user", "")), str(entry.get("nkey", ""))
        password = str(entry.get("password", entry.get("pass", "")))
        if bool(name) == bool(nkey):
            raise ConfigError(f"{where}: give either user (with password) or nkey")
        if name and not password:
            raise ConfigError(f"{where}: user {name!r} has no password")
        if nkey and not (nkey.startswith("U") and len(nkey) == 56):
            raise ConfigError(f"{where}: nkey must be a user public key (56 characters starting with U)")
        try:
            perms = Permissions.from_config(entry.get("permissions"))
        except (AttributeError, TypeError) as exc:
            raise ConfigError(f"{where}: permissions: {exc}") from None
        out.append(User(name or nkey, password, nkey, perms))
    names = [u.name for u in out]
    if len(set(names)) != len(names):
        raise ConfigError(f"{path}: a user is listed twice")
    return tuple(out)


def load(settings: Settings) -> Security:
    """The security settings from flags, variables and the config file (flags win)."""
    raw = read_file(settings.config_file) if settings.config_file else {}
    path = settings.config_file or "(flags)"
    auth = raw.get("authorization", {}) or {}
    limits = raw.get("limits", {}) or {}
    tls = raw.get("tls", {}) or {}
    users = list(_users(auth.get("users", []) or [], path))
    if settings.user:
        if not settings.password:
            raise ConfigError("--user needs --pass")
        users = [u for u in users if u.name != settings.user] + [User(settings.user, settings.password)]
    token = settings.auth_token or str(auth.get("token", ""))
    if token and users:
        raise ConfigError("give a token or users, not both (as nats-server)")
    try:
        max_conn = int(settings.max_connections or limits.get("max_connections", 0))
        max_subs = int(settings.max_subscriptions or limits.get("max_subscriptions", 0))
        timeout = float(auth.get("timeout", settings.auth_timeout_s))
    except (TypeError, ValueError) as exc:
        raise ConfigError(f"{path}: limits: {exc}") from None
    cert, key = settings.tls_cert or tls.get("cert", ""), settings.tls_key or tls.get("key", "")
    if bool(cert) != bool(key):
        raise ConfigError("TLS needs both a certificate and its key (--tls-cert and --tls-key)")
    tls_conf = None
    if cert:
        tls_conf = Tls(cert, key, settings.tls_ca or tls.get("ca", ""), bool(settings.tls_verify or tls.get("verify", False)))
        if tls_conf.verify and not tls_conf.ca:
            raise ConfigError("--tls-verify needs --tls-ca (the CA that signs client certificates)")
    return Security(Authenticator(token, tuple(users)), Limits(max_conn, max_subs), timeout, tls_conf)
