"""Runtime backends: where containers run."""

from ._base import ExitCallback, ExitInfo, Runtime
from ._local import LocalRuntime

__all__ = ["ExitCallback", "ExitInfo", "LocalRuntime", "Runtime"]
