"""Dashboard sessions: the only credential is the admin token; the cookie is derived from it.

The session value is an HMAC of the admin token under a key that lives only in this server process, so the
cookie never contains the token itself, cannot be forged without it, and every session ends when the server
restarts or the admin token changes. The CSRF token is derived from the session the same way.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets

from starlette.requests import Request

SESSION_COOKIE = "shipyard_session"
CSRF_FIELD = "csrf_token"


class DashboardAuth:
    def __init__(self, admin_token: str) -> None:
        self._admin_token = admin_token
        self._key = secrets.token_bytes(32)
        self._session = self._mac("session", admin_token)

    def _mac(self, purpose: str, value: str) -> str:
        return hmac.new(self._key, f"{purpose}:{value}".encode(), hashlib.sha256).hexdigest()

    def login(self, presented: str) -> str | None:
        """The session cookie value if `presented` is the admin token, else None."""
        from ..server._credentials import admin_token_matches  # the server package imports this one

        if not admin_token_matches(presented.strip(), self._admin_token):
            return None
        return self._session

    def is_signed_in(self, request: Request) -> bool:
        cookie = request.cookies.get(SESSION_COOKIE)
        return cookie is not None and hmac.compare_digest(cookie.encode(), self._session.encode())

    def csrf_token(self) -> str:
        return self._mac("csrf", self._session)

    def csrf_ok(self, presented: str | None) -> bool:
        return presented is not None and hmac.compare_digest(presented.encode(), self.csrf_token().encode())
