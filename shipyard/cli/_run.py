"""`shipyard run FILE[::NAME]`: deploy an ephemeral app, run a local entrypoint (or one function), remove it.

The app's web functions are reachable while the entrypoint runs; calls the entrypoint makes (`f.remote()`)
go to the ephemeral app.
"""

from __future__ import annotations

import asyncio
import inspect
import sys
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

import click
import cloudpickle

from shipyard.cli._deploy import load_and_deploy, name_option
from shipyard.cli._output import env_option
from shipyard.cli._serve import _Heartbeat
from shipyard.exceptions import InvalidError, NotFoundError
from shipyard.sdk import App, Function
from shipyard.sdk._loader import open_app
from shipyard.spec import DeployResponse


def _convert(value: str, annotation: Any, option: str) -> Any:
    kinds: dict[Any, Callable[[str], Any]] = {int: int, float: float, "int": int, "float": float}
    convert = kinds.get(annotation)
    if convert is None:
        return value
    try:
        return convert(value)
    except ValueError:
        raise InvalidError(f"--{option} takes a number, not {value!r}") from None


def parse_arguments(fn: Callable[..., Any], args: list[str]) -> dict[str, Any]:
    """`--name value` (and `--flag` / `--no-flag` for booleans) into keyword arguments of `fn`."""
    params = inspect.signature(fn).parameters
    kwargs: dict[str, Any] = {}
    i = 0
    while i < len(args):
        arg = args[i]
        if not arg.startswith("--"):
            raise InvalidError(
                f"Unexpected argument {arg!r}: pass the entrypoint's parameters as --name value")
        option = arg[2:]
        key = option.replace("-", "_")
        negated = key.startswith("no_") and key[3:] in params
        if negated:
            kwargs[key[3:]] = False
            i += 1
            continue
        if key not in params:
            names = ", ".join(f"--{p.replace('_', '-')}" for p in params) or "none"
            raise InvalidError(f"Unknown option --{option} (the entrypoint takes: {names})")
        annotation = params[key].annotation
        if annotation in (bool, "bool"):
            kwargs[key] = True
            i += 1
            continue
        if i + 1 >= len(args):
            raise InvalidError(f"--{option} needs a value")
        kwargs[key] = _convert(args[i + 1], annotation, option)
        i += 2
    return kwargs


def _pick(app: App, name: str) -> Callable[..., Any] | Function:
    entrypoints: dict[str, Callable[..., Any] | Function] = {**app.local_entrypoints}
    functions: dict[str, Callable[..., Any] | Function] = {
        tag: fn for tag, fn in app.registered_functions.items() if fn.web is None}
    if name:
        found = entrypoints.get(name) or functions.get(name)
        if found is None:
            choices = ", ".join(sorted({*entrypoints, *functions})) or "none"
            raise InvalidError(f"No local entrypoint or function named {name!r} (choices: {choices})")
        return found
    candidates = entrypoints or functions
    if len(candidates) == 1:
        return next(iter(candidates.values()))
    choices = ", ".join(sorted(candidates)) or "none"
    raise InvalidError(f"Say which one to run with FILE::NAME (choices: {choices})")


def run_in_app(file: Path, name: str, deployed: DeployResponse, env: str, args: list[str]) -> None:
    with open_app(file) as loaded:
        app = loaded.app
        app.bound_name, app.bound_id, app.bound_environment = deployed.name, deployed.app_id, env
        # Objects defined in the app file travel by value: the containers import it under another name.
        cloudpickle.register_pickle_by_value(sys.modules[loaded.module_name])
        target = _pick(app, name)
        if isinstance(target, Function):
            result = target.remote(**parse_arguments(target.raw_f, args))
            if result is not None:
                click.echo(result)
            return
        outcome = target(**parse_arguments(target, args))
        if inspect.iscoroutine(outcome):
            asyncio.run(outcome)


@click.command(context_settings={"ignore_unknown_options": True, "allow_extra_args": True})
@click.argument("target", metavar="FILE[::NAME]")
@name_option
@env_option
@click.pass_context
def run(ctx: click.Context, target: str, name: str | None, env: str) -> None:
    """Run a local entrypoint (or a function) of the app in FILE, as an ephemeral app.

    Options after FILE are the entrypoint's parameters: `shipyard run app.py --count 3`.
    """
    file_text, _, entry = target.partition("::")
    file = Path(file_text)
    if not file.is_file():
        raise click.BadParameter(f"File {file_text!r} does not exist.", param_hint="FILE")
    client, _request, response = load_and_deploy(file.resolve(), name=name, env=env, ephemeral=True)
    stop = threading.Event()
    _Heartbeat(client, response.app_id, stop).start()
    try:
        run_in_app(file.resolve(), entry, response, env, list(ctx.args))
    finally:
        stop.set()
        try:
            client.delete_app_by_id(response.app_id)
        except NotFoundError:
            pass
        finally:
            client.close()
    click.echo(f"✓ App {response.name} finished.", err=True)
