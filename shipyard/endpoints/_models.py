"""Wire models of the endpoint API (CLI ↔ control plane)."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, SecretStr

Region = Literal["us-west", "us-east", "eu-west", "ap-south"]
REGIONS: tuple[Region, ...] = ("us-west", "us-east", "eu-west", "ap-south")
WeightsSource = Literal["catalog", "bundled-gguf", "huggingface", "volume"]
EndpointStatus = Literal["provisioning", "downloading", "loading", "ready", "idle", "stopped", "failed"]


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid")


class EndpointCreate(_Model):
    name: str | None = None
    model: str
    custom_hf_repo: str | None = None
    custom_hf_revision: str | None = None
    custom_hf_token: SecretStr | None = None
    custom_volume_name: str | None = None
    custom_volume_path: str | None = None
    routing_region: Region = "us-west"
    colocate_compute: bool = False
    unauthenticated: bool = False
    environment: str = "main"
    gpu: str | None = None
    min_containers: int = Field(default=0, ge=0)
    max_containers: int | None = Field(default=None, ge=1)
    scaledown_window: float = Field(default=120.0, gt=0)


class EndpointRecordSpec(_Model):
    """What the store keeps of an endpoint (never the token)."""

    model: str
    served_model_name: str
    weights_source: WeightsSource
    weights: str
    """What the engine loads: a repo id, a folder or a GGUF file."""
    custom_hf_repo: str | None = None
    custom_hf_revision: str | None = None
    """The pinned commit sha."""
    has_hf_token: bool = False
    custom_volume_name: str | None = None
    custom_volume_path: str | None = None
    routing_region: Region
    colocate_compute: bool
    unauthenticated: bool
    gpu: str | None
    gpu_count: int
    cpu: float
    memory_mib: int
    engine: str
    recipe: str
    argv: list[str]
    in_process: bool = False
    """The container serves the engine's ASGI app itself (`asgi_app`), else the engine runs as its own
    server process behind a `web_server` function."""
    min_containers: int
    max_containers: int | None
    scaledown_window: float
    download_bytes: int = 0
    downloaded_bytes: int = 0


class EndpointInfo(_Model):
    endpoint_id: str
    name: str
    environment: str
    model: str
    served_model_name: str
    status: EndpointStatus
    status_reason: str | None = None
    url: str
    dashboard_url: str
    region: Region
    colocate_compute: bool
    recipe: str
    engine: str
    requires_proxy_auth: bool
    weights_source: str
    revision: str | None = None
    containers: int = 0
    download_bytes: int = 0
    downloaded_bytes: int = 0
    created_at: float


class UsageRow(_Model):
    kind: Literal["endpoint", "app"]
    name: str
    environment: str
    seconds: float
    """Container-seconds."""
    gpu_seconds: float
    cpu_seconds: float
    cost: float
    requests: int
    tokens_in: int
    tokens_out: int
