"""Runtime backends: where containers run."""

from ._base import ExitCallback, ExitInfo, Runtime
from ._local import LocalRuntime
from ._ray import RayRuntime

__all__ = ["ExitCallback", "ExitInfo", "LocalRuntime", "RayRuntime", "Runtime"]
