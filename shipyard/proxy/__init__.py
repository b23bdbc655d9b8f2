"""The data plane: routing, proxy auth, limits, queueing, container slots, streaming and metrics."""

from ._app import ProxyApp
from ._forward import open_upstream
from ._limits import ProxyLimits
from ._metrics import Metrics, PoolState
from ._pool import Container, FunctionPool
from ._routing import RouteEntry, RoutingTable

__all__ = [
    "Container",
    "FunctionPool",
    "Metrics",
    "PoolState",
    "ProxyApp",
    "ProxyLimits",
    "RouteEntry",
    "RoutingTable",
    "open_upstream",
]
