"""`shipyard endpoint create | list | stop | start | delete | logs | catalog`."""

from __future__ import annotations

import json
import time

import click
from rich.table import Table

from shipyard.cli._autostart import connect
from shipyard.cli._client import ApiClient
from shipyard.cli._output import echo_json, env_option, json_option, out_console
from shipyard.endpoints import REGIONS, EndpointInfo

_POLL_S = 0.5


def _info(body: object) -> EndpointInfo:
    return EndpointInfo.model_validate(body)


def path_form(client: ApiClient, info: EndpointInfo) -> str:
    """The endpoint URL through `/fn/{host label}`, for clients that cannot resolve `*.localhost`."""
    label = info.url.split("//", 1)[1].split(".", 1)[0]
    return f"{client.base_url}/fn/{label}"


def _size(count: int) -> str:
    value = float(count)
    for unit in ("B", "KB", "MB", "GB"):
        if value < 1024 or unit == "GB":
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    return f"{count} B"


def _follow(client: ApiClient, info: EndpointInfo) -> EndpointInfo:
    """Print status changes (and download progress) until the endpoint serves or fails."""
    last = ""
    while True:
        line: str = info.status
        if info.status == "downloading" and info.download_bytes:
            line += f" ({_size(info.downloaded_bytes)} of {_size(info.download_bytes)})"
        if line != last:
            click.echo(f"  … {line}", err=True)
            last = line
        if info.status == "ready":
            return info
        if info.status in ("failed", "stopped"):
            why = info.status_reason or "see `shipyard endpoint logs`"
            raise click.ClickException(f"Endpoint {info.name} is {info.status}: {why}")
        time.sleep(_POLL_S)
        params = {"env": info.environment}
        info = _info(client.request_json("GET", f"/api/endpoints/{info.name}", params=params))


@click.group()
def endpoint() -> None:
    """Deploy and manage OpenAI-compatible LLM endpoints."""


@endpoint.command("create")
@click.argument("name", required=False)
@click.option("--model", required=True,
              help="Catalog model (base model for custom weights), e.g. Qwen/Qwen3.5-4B.")
@click.option("--custom-hf-repo", default=None, help="Serve weights from this Hugging Face repo.")
@click.option("--custom-hf-revision", default=None,
              help="Branch, tag or commit of --custom-hf-repo (pinned).")
@click.option("--custom-hf-token", default=None,
              help="Token for gated or private repos (never stored in specs).")
@click.option("--custom-volume-name", default=None, help="Serve weights from this Volume...")
@click.option("--custom-volume-path", default=None, help="...at this path (must hold config.json or a GGUF).")
@click.option("--routing-region", type=click.Choice(REGIONS), default="us-west", show_default=True)
@click.option("--colocate-compute", is_flag=True,
              help="Pin containers to the routing region (price multiplier).")
@click.option("--unauthenticated", is_flag=True, help="Accept requests without a proxy token.")
@env_option
@click.option("--gpu", default=None, metavar="TYPE[:N]",
              help="GPU type and count per container (default: CPU).")
@click.option("--min-containers", type=int, default=0, show_default=True)
@click.option("--max-containers", type=int, default=None)
@click.option("--scaledown-window", type=float, default=120.0, show_default=True,
              help="Idle seconds before scaling down.")
@click.option("--wait", is_flag=True, help="Follow progress until the endpoint serves.")
def create(
    name: str | None, model: str, custom_hf_repo: str | None, custom_hf_revision: str | None,
    custom_hf_token: str | None, custom_volume_name: str | None, custom_volume_path: str | None,
    routing_region: str, colocate_compute: bool, unauthenticated: bool, env: str, gpu: str | None,
    min_containers: int, max_containers: int | None, scaledown_window: float, wait: bool,
) -> None:
    """Create an endpoint serving MODEL (NAME defaults to one derived from the model)."""
    body = {
        "name": name, "model": model, "custom_hf_repo": custom_hf_repo,
        "custom_hf_revision": custom_hf_revision,
        "custom_hf_token": custom_hf_token, "custom_volume_name": custom_volume_name,
        "custom_volume_path": custom_volume_path, "routing_region": routing_region,
        "colocate_compute": colocate_compute, "unauthenticated": unauthenticated, "environment": env,
        "gpu": gpu, "min_containers": min_containers, "max_containers": max_containers,
        "scaledown_window": scaledown_window,
    }
    with connect(autostart=True) as client:
        info = _info(client.request_json("POST", "/api/endpoints", json_body=body))
        click.echo(f"✓ Created endpoint {info.name} ({info.endpoint_id}) serving {info.served_model_name}")
        click.echo(f"  Recipe: {info.recipe}")
        click.echo(f"  URL: {info.url}")
        click.echo(f"  URL (path form): {path_form(client, info)}")
        click.echo(f"  Dashboard: {info.dashboard_url}")
        if info.requires_proxy_auth:
            click.echo(f"  Auth: Modal-Key/Modal-Secret of a proxy token in '{env}' "
                       "(`shipyard workspace proxy-tokens create`)")
        if wait:
            info = _follow(client, info)
            click.echo(f"✓ {info.name} is ready: {info.url}/v1")


@endpoint.command("list")
@env_option
@json_option
def list_endpoints(env: str, as_json: bool) -> None:
    """List endpoints with their status and URL."""
    with connect() as client:
        items = [_info(b) for b in client.request_json("GET", "/api/endpoints", params={"env": env})]
    if as_json:
        echo_json(items)
        return
    table = Table(title=f"Endpoints ({env})")
    for column in ("Name", "Id", "Model", "Served as", "Status", "URL", "Region", "Recipe"):
        table.add_column(column, overflow="fold")
    for info in items:
        status = info.status + (f": {info.status_reason}" if info.status_reason else "")
        table.add_row(info.name, info.endpoint_id, info.model, info.served_model_name, status, info.url,
                      info.region + (" (colocated)" if info.colocate_compute else ""), info.recipe)
    out_console().print(table)


def _lifecycle(action: str, name: str, env: str) -> EndpointInfo:
    with connect() as client:
        return _info(client.request_json("POST", f"/api/endpoints/{name}/{action}", params={"env": env}))


@endpoint.command("stop")
@click.argument("name")
@env_option
def stop(name: str, env: str) -> None:
    """Stop serving and billing; the endpoint stays listed."""
    info = _lifecycle("stop", name, env)
    click.echo(f"✓ Stopped endpoint {info.name} ({info.endpoint_id})")


@endpoint.command("start")
@click.argument("name")
@env_option
@click.option("--wait", is_flag=True, help="Follow progress until the endpoint serves.")
def start(name: str, env: str, wait: bool) -> None:
    """Start a stopped endpoint again."""
    info = _lifecycle("start", name, env)
    click.echo(f"✓ Starting endpoint {info.name} ({info.endpoint_id}): {info.url}")
    if wait:
        with connect() as client:
            _follow(client, info)
        click.echo(f"✓ {info.name} is ready")


@endpoint.command("delete")
@click.argument("name")
@env_option
def delete(name: str, env: str) -> None:
    """Delete an endpoint (its usage history stays)."""
    with connect() as client:
        client.request_json("DELETE", f"/api/endpoints/{name}", params={"env": env})
    click.echo(f"✓ Deleted endpoint {name}")


@endpoint.command("logs")
@click.argument("name")
@env_option
@click.option("--follow", "-f", is_flag=True, help="Keep printing new lines.")
def logs(name: str, env: str, follow: bool) -> None:
    """Print the endpoint's engine and platform logs."""
    params = {"env": env, "follow": "true" if follow else "false"}
    with connect() as client:
        for line in client.stream_lines("GET", f"/api/endpoints/{name}/logs", params=params):
            click.echo(line)


@endpoint.command("catalog")
@json_option
def catalog(as_json: bool) -> None:
    """List the models endpoints can serve."""
    with connect() as client:
        models = client.request_json("GET", "/api/endpoints/catalog")
    if as_json:
        click.echo(json.dumps(models, indent=2))
        return
    table = Table(title="Endpoint catalog")
    for column in ("Model", "Family", "Params (B)", "Context", "Min GPU GB", "Speculative", "CPU"):
        table.add_column(column, overflow="fold")
    for m in models:
        speculative = "mtp" if m.get("mtp_heads") else "eagle3" if m.get("eagle3_draft") else "ngram"
        table.add_row(m["repo"], m["family"], f"{m['params_b']:g}", str(m["context_length"]),
                      f"{m['min_gpu_memory_gb']:g}", speculative, "yes" if m.get("cpu") else "")
    out_console().print(table)
