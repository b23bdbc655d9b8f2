"""The admin credential that guards the control-plane API."""

from __future__ import annotations

import hmac
import os
import secrets
from collections.abc import Callable
from typing import Annotated

from fastapi import Header

from shipyard._paths import HomeLayout
from shipyard.exceptions import AuthError


def ensure_admin_token(layout: HomeLayout) -> str:
    """Return the admin token, creating it (mode 0600) on the first start."""
    path = layout.admin_token
    path.parent.mkdir(parents=True, exist_ok=True)
    token = secrets.token_urlsafe(32)
    try:
        # O_EXCL with the mode given at creation: the file is never world-readable, not even briefly, and two
        # servers starting at once cannot both write a token.
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        return _read_token(layout)
    with os.fdopen(fd, "w") as fh:
        fh.write(token + "\n")
    return token


def _read_token(layout: HomeLayout) -> str:
    token = layout.admin_token.read_text().strip()
    if not token:
        raise AuthError(f"Admin token file {layout.admin_token} is empty; delete it and restart the server "
                        "to create a new one")
    return token


def admin_token_matches(presented: str | None, token: str) -> bool:
    if not presented:
        return False
    return hmac.compare_digest(presented.encode(), token.encode())


def admin_dependency(admin_token: str) -> Callable[..., None]:
    """A FastAPI dependency that admits only requests carrying the admin token as a Bearer token."""

    def require_admin(authorization: Annotated[str | None, Header()] = None) -> None:
        presented = None
        if authorization and authorization.lower().startswith("bearer "):
            presented = authorization[7:].strip()
        if not admin_token_matches(presented, admin_token):
            raise AuthError(
                "Missing or wrong admin credential: send 'Authorization: Bearer <token>' with the token "
                "from $SHIPYARD_HOME/admin_token"
            )

    return require_admin
