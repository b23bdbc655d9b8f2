"""The exception hierarchy: one root, a few subclasses.

Third-party errors are converted to these at the boundary of the module that
calls the third party, so callers only ever need to catch `ShipyardError`.
"""

from __future__ import annotations


class ShipyardError(Exception):
    """Root of every error Shipyard raises on purpose."""


class InvalidError(ShipyardError):
    """The user asked for something that cannot work (bad decorator use, bad label, bad flag)."""


class NotFoundError(ShipyardError):
    """A named object (app, function, secret, token, endpoint) does not exist."""


class AuthError(ShipyardError):
    """A credential is missing or wrong."""


class ImageBuildError(ShipyardError):
    """An image step failed or cannot be run by this runtime."""


class ContainerError(ShipyardError):
    """A container failed to start, crashed, or timed out."""


class ServerError(ShipyardError):
    """The control plane cannot be reached or answered with an error."""


class ExecutionError(ShipyardError):
    """Running user code failed (an app file that does not import, for instance)."""


class AlreadyExistsError(InvalidError):
    """A named object (a secret, for instance) already exists and overwriting it was not asked for."""


class FunctionTimeoutError(ExecutionError, TimeoutError):
    """A function call ran longer than the function's `timeout=`."""
