"""The control plane: HTTP API, store, image builder, scheduler."""

from ._main import run_server

__all__ = ["run_server"]
