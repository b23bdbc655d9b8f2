"""Random identifiers and proxy-token secrets, shared by the control plane and the proxy."""

from __future__ import annotations

import hashlib
import hmac
import secrets
import string

_ID_ALPHABET = string.ascii_lowercase + string.digits


def new_id(prefix: str, length: int = 12) -> str:
    """A short random id such as `ap-3k9x…`: lowercase so that it is safe in hostnames and file names."""
    return f"{prefix}-" + "".join(secrets.choice(_ID_ALPHABET) for _ in range(length))


def _url_safe(length: int) -> str:
    # token_urlsafe yields ~1.3 chars per byte; over-generate and cut to the exact length the format promises.
    return secrets.token_urlsafe(length)[:length]


def new_proxy_token() -> tuple[str, str]:
    """A fresh (token_id, token_secret) pair: `wk-` + 24 chars and `ws-` + 32 chars."""
    return "wk-" + _url_safe(24), "ws-" + _url_safe(32)


def hash_secret(secret: str) -> str:
    # A plain SHA-256 is enough here: the secrets are 32 random url-safe characters (~190 bits), so there is
    # no dictionary to attack and a slow password hash (bcrypt, scrypt) would only cost the proxy latency on
    # every authenticated request.
    return hashlib.sha256(secret.encode()).hexdigest()


def verify_secret(secret: str, stored_hash: str) -> bool:
    return hmac.compare_digest(hash_secret(secret), stored_hash)
