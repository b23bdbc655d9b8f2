"""`shipyard deploy`, and the load → deploy → print URLs steps that `serve` shares."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import click
from pydantic import ValidationError
from rich.text import Text

from shipyard import spec
from shipyard.cli._autostart import connect
from shipyard.cli._client import ApiClient
from shipyard.cli._output import env_option, err_console
from shipyard.exceptions import ExecutionError

LOADER_EXIT_USER_ERROR = 2

app_file_argument = click.argument(
    "file", type=click.Path(exists=True, dir_okay=False, path_type=Path), metavar="FILE",
)
name_option = click.option("--name", "-n", default=None, help="App name (default: the name the file gives).")


def load_request(file: Path, *, name: str | None, env: str, ephemeral: bool) -> spec.DeployRequest:
    """Import the app file in a fresh interpreter and return the DeployRequest it describes.

    A subprocess keeps the user's import-time side effects (and a reload's stale modules) out of the CLI.
    """
    command = [sys.executable, "-m", "shipyard.sdk.loader", str(file)]
    if name:
        command += ["--name", name]
    if ephemeral:
        command.append("--ephemeral")
    command += ["--env", env]
    result = subprocess.run(command, capture_output=True, text=True, check=False)
    stderr = result.stderr.strip()
    if result.returncode == LOADER_EXIT_USER_ERROR:
        raise ExecutionError(stderr or f"Could not load {file}")
    if result.returncode != 0:
        raise ExecutionError(f"Loading {file} failed (exit code {result.returncode}):\n{stderr}")
    return _parse_loader_output(file, result.stdout)


def _parse_loader_output(file: Path, stdout: str) -> spec.DeployRequest:
    # The request is the loader's last line; anything the app printed while importing comes before it.
    lines = [line for line in stdout.splitlines() if line.strip()]
    candidates = [stdout, lines[-1]] if lines else [stdout]
    for candidate in candidates:
        try:
            return spec.DeployRequest.model_validate_json(candidate)
        except ValidationError:
            continue
    raise ExecutionError(f"Loading {file} did not produce a deploy request; the loader printed:\n"
                         f"{stdout.strip()[-2000:]}")


def deploy_with_progress(client: ApiClient, request: spec.DeployRequest) -> spec.DeployResponse:
    """Send the request, showing the server's progress messages on stderr."""
    console = err_console()
    with console.status(f"Deploying {request.app.name}…") as status:
        def on_progress(message: str) -> None:
            status.update(Text(message))
            console.print(Text(message, style="dim"))

        return client.deploy(request, on_progress=on_progress)


def function_lines(response: spec.DeployResponse) -> list[str]:
    """One line per function; web functions show their URL and a key when they need a proxy token."""
    lines = []
    for function in response.functions:
        if function.url is None:
            lines.append(f"Created function {function.tag}")
            continue
        key = " 🔑" if function.requires_proxy_auth else ""
        lines.append(f"Created web function {function.tag} => {function.url}{key}")
    return lines


def echo_functions(response: spec.DeployResponse) -> None:
    for line in function_lines(response):
        click.echo(line)


def load_and_deploy(file: Path, *, name: str | None, env: str, ephemeral: bool) -> tuple[
        ApiClient, spec.DeployRequest, spec.DeployResponse]:
    """The first deploy of `serve` and `deploy`: nothing reaches the server if the file does not load."""
    request = load_request(file, name=name, env=env, ephemeral=ephemeral)
    client = connect(autostart=True)
    try:
        response = deploy_with_progress(client, request)
    except BaseException:
        client.close()
        raise
    echo_functions(response)
    return client, request, response


@click.command()
@app_file_argument
@name_option
@env_option
def deploy(file: Path, name: str | None, env: str) -> None:
    """Deploy the app in FILE persistently."""
    client, _request, response = load_and_deploy(file, name=name, env=env, ephemeral=False)
    client.close()
    click.echo(f"✓ App deployed: {response.name} ({response.app_id}, version {response.version})")
