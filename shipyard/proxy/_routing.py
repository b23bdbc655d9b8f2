"""The routing table the control plane pushes to the proxy: host label → route and pool.

Lookups are dictionary reads; the proxy never touches the database on the request path.
"""

from __future__ import annotations

from dataclasses import dataclass

from .._tokens import verify_secret
from ..spec import Route
from ._pool import FunctionPool


@dataclass(frozen=True)
class RouteEntry:
    route: Route
    pool: FunctionPool


class RoutingTable:
    def __init__(self) -> None:
        self._routes: dict[str, RouteEntry] = {}
        self._stopped: dict[str, str] = {}
        self._tokens: dict[str, tuple[str, str]] = {}

    def lookup(self, host_label: str) -> RouteEntry | None:
        return self._routes.get(host_label)

    def stopped_message(self, host_label: str) -> str | None:
        return self._stopped.get(host_label)

    def set_route(self, route: Route, pool: FunctionPool) -> None:
        self._stopped.pop(route.host_label, None)
        self._routes[route.host_label] = RouteEntry(route, pool)

    def remove_route(self, host_label: str, *, stopped_message: str | None = None) -> None:
        self._routes.pop(host_label, None)
        if stopped_message is not None:
            self._stopped[host_label] = stopped_message

    def routes(self) -> list[Route]:
        return [entry.route for entry in self._routes.values()]

    # -- proxy tokens ---------------------------------------------------------------------------

    def set_tokens(self, tokens: dict[str, tuple[str, str]]) -> None:
        """Replace the token table: token id → (environment, secret hash)."""
        self._tokens = dict(tokens)

    def token_is_valid(self, token_id: str, secret: str, environment: str) -> bool:
        entry = self._tokens.get(token_id)
        if entry is None:
            # Still hash something so that unknown ids take as long as wrong secrets.
            verify_secret(secret, "0" * 64)
            return False
        token_environment, secret_hash = entry
        return verify_secret(secret, secret_hash) and token_environment == environment
