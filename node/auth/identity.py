"""Checking a CONNECT's credentials: a token, a user and password, or an nkey's signature.

The methods are nats-server's, and so are the CONNECT fields clients send for them:
- token (`--auth`): `auth_token`; the configured token may be a bcrypt hash;
- user and password (`--user`/`--pass`, or `[[authorization.users]]`): `user` and
  `pass`; a password that starts with `$2` is a bcrypt hash, checked with the `bcrypt`
  library (the same `$2a$`/`$2b$` hashes `nats server passwd` makes), any other is
  compared in constant time;
- nkey (`nkey = "U..."` in the users list): INFO carries a fresh random `nonce`, the
  client signs it with its ed25519 seed and sends `nkey` and `sig` (base64url, or
  standard base64 as nats-py sends it); the public key is decoded with the `nkeys`
  library's checksum and the signature checked with PyNaCl (which nkeys is built on).
Nothing here logs or keeps a secret beyond the check: errors name the user, never the
password or token.
"""

from __future__ import annotations

import base64
import hmac
from dataclasses import dataclass

from node.auth.permissions import Permissions


@dataclass(frozen=True)
class User:
    """A configured identity; `permissions` None means it may publish and subscribe anywhere."""

    name: str
    password: str = ""
    nkey: str = ""
    permissions: Permissions | None = None

    def __repr__(self) -> str:  # never a password in a log line or a traceback
        return f"User({self.name!r}{', nkey' if self.nkey else ''})"


ANONYMOUS = User("")


def secret_matches(given: str, configured: str) -> bool:
    """A password or token against its configured value (bcrypt hash or plain text)."""
    if not configured:
        return False
    if configured.startswith("$2"):
        import bcrypt  # bcrypt costs about 0.2 s a check at cost 12: only when a hash is configured

        try:
            return bcrypt.checkpw(given.encode(), configured.encode())
        except ValueError:
            return False
    return hmac.compare_digest(given.encode(), configured.encode())


def nkey_public(public_key: str) -> bytes | None:
    """The raw ed25519 key inside an nkey user public key (`U...`), or None if it is not one:
    base32 of prefix byte, 32 key bytes and a CRC-16 (the nkeys library's own crc16)."""
    import nkeys

    try:
        raw = base64.b32decode(public_key + "=" * (-len(public_key) % 8))
    except (ValueError, TypeError):
        return None
    if len(raw) != 35 or raw[0] != nkeys.PREFIX_BYTE_USER:
        return None
    if nkeys.crc16(bytearray(raw[:-2])) != int.from_bytes(raw[-2:], "little"):
        return None
    return raw[1:33]


def nkey_signed(public_key: str, nonce: str, sig: str) -> bool:
    """Did the holder of `public_key`'s seed sign `nonce`? (`sig`: base64url or standard, padded or not)."""
    if not public_key or not sig or not nonce:
        return False
    key = nkey_public(public_key)
    if key is None:
        return False
    import nacl.exceptions
    import nacl.signing

    try:
        text = sig.replace("+", "-").replace("/", "_").rstrip("=")
        signature = base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
        nacl.signing.VerifyKey(key).verify(nonce.encode(), signature)
        return True
    except (ValueError, TypeError, nacl.exceptions.BadSignatureError, nacl.exceptions.ValueError):
        return False


class Authenticator:
    """The identities of a node, replaced whole on reload."""

    def __init__(self, token: str = "", users: tuple[User, ...] = ()) -> None:
        self.token = token
        self.users = {u.name: u for u in users if u.name and not u.nkey}
        self.nkeys = {u.nkey: u for u in users if u.nkey}

    @property
    def required(self) -> bool:
        return bool(self.token or self.users or self.nkeys)

    @property
    def wants_nonce(self) -> bool:
        return bool(self.nkeys)

    def authenticate(self, user: str, password: str, token: str, nkey: str, sig: str, nonce: str) -> User | None:
        """The user these credentials prove, ANONYMOUS when none are required, None if refused."""
        if not self.required:
            return ANONYMOUS
        if nkey:
            known = self.nkeys.get(nkey)
            return known if known is not None and nkey_signed(nkey, nonce, sig) else None
        if user:
            known = self.users.get(user)
            return known if known is not None and secret_matches(password, known.password) else None
        if self.token and token:
            return User("token") if secret_matches(token, self.token) else None
        return None
