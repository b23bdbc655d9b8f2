"""Attribute names the decorators leave on user functions and classes, read by the SDK and the container."""

from __future__ import annotations

WEB_ATTR = "__shipyard_web__"
"""A `spec.WebConfig` on a web function or web method."""
ENTER_ATTR = "__shipyard_enter__"
EXIT_ATTR = "__shipyard_exit__"
METHOD_ATTR = "__shipyard_method__"
CONCURRENT_ATTR = "__shipyard_concurrent__"
"""`(max_inputs, target_inputs)` set by `@concurrent` on a function or class."""


class Registered:
    """Base of the objects `@app.function` and `@app.cls` return.

    Decorators that must sit below `@app.function`/`@app.cls` recognise misplaced use by this type.
    """

    decorator = "@app.function()"
