"""The entrypoint run inside every container: `python -m shipyard.container SPEC_JSON_PATH`.

Importing this package stays cheap: the server stack loads only when `main` runs.
"""

from __future__ import annotations


def main(argv: list[str] | None = None, started_at: float | None = None) -> int:
    """Runs one container from the ContainerSpec JSON path in `argv` (default `sys.argv[1:]`);
    returns the process exit status."""
    from shipyard.container._entrypoint import main as run

    return run(argv, started_at)


__all__ = ["main"]
