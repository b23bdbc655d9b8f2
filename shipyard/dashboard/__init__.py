"""The web dashboard served by `shipyard server` under `/dashboard` (login with the admin token)."""

from ._routes import create_dashboard

__all__ = ["create_dashboard"]
