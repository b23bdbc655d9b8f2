"""`python -m shipyard.sdk.loader FILE [--name N] [--ephemeral] [--env E]`.

Prints the app's `DeployRequest` as JSON on stdout and exits 0; on failure prints the reason on stderr and
exits 2, with nothing on stdout. The CLI runs it in a subprocess so that the user's imports stay out of the
CLI's process. Output the user's code prints while it is imported goes to stderr.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import sys
import traceback
from collections.abc import Iterator, Sequence
from pathlib import Path

from ..exceptions import ShipyardError
from ..spec import DeployRequest
from ._loader import build_deploy_request


@contextlib.contextmanager
def _stdout_to_stderr() -> Iterator[None]:
    """Keep stdout for the JSON: send what the user's code prints (even from C code) to stderr."""
    sys.stdout.flush()
    saved = os.dup(1)
    try:
        os.dup2(2, 1)
        with contextlib.redirect_stdout(sys.stderr):
            yield
    finally:
        sys.stderr.flush()
        os.dup2(saved, 1)
        os.close(saved)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m shipyard.sdk.loader", description="Print the deploy request of an app file as JSON."
    )
    parser.add_argument("file", help="the app file")
    parser.add_argument("--name", default=None, help="app name (default: App(name), else the file name)")
    parser.add_argument("--ephemeral", action="store_true", help="an app that lives while `serve` runs")
    parser.add_argument("--env", default="main", help="environment (default: main)")
    args = parser.parse_args(argv)
    request: DeployRequest
    try:
        with _stdout_to_stderr():
            request = build_deploy_request(
                Path(args.file), name=args.name, ephemeral=args.ephemeral, environment=args.env,
            )
    except ShipyardError as exc:
        print(str(exc), file=sys.stderr)
        return 2
    except Exception:
        print(f"Internal error while loading {args.file}:\n{traceback.format_exc()}", file=sys.stderr)
        return 2
    sys.stdout.write(request.model_dump_json())
    sys.stdout.write("\n")
    sys.stdout.flush()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
