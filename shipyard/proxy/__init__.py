"""The data plane: routing, proxy auth, queueing, container slots and streaming."""

from ._app import ProxyApp
from ._forward import open_upstream
from ._pool import Container, FunctionPool
from ._routing import RouteEntry, RoutingTable

__all__ = ["Container", "FunctionPool", "ProxyApp", "RouteEntry", "RoutingTable", "open_upstream"]
