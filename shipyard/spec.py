"""The wire contract: typed models shared by the SDK, CLI, control plane, runtime and container.

Defined once here; every other part imports these models instead of passing dicts around.
Nothing in a spec is pickled: specs travel as JSON.
"""

from __future__ import annotations

import hashlib
from enum import StrEnum
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=False)


class WebKind(StrEnum):
    FASTAPI_ENDPOINT = "fastapi_endpoint"
    ASGI_APP = "asgi_app"
    WSGI_APP = "wsgi_app"
    WEB_SERVER = "web_server"


class WebConfig(_Model):
    kind: WebKind
    method: str = "GET"
    """HTTP method of a `fastapi_endpoint`; ignored by the other kinds."""
    label: str | None = None
    """User-chosen label; `None` means the default `{app}-{function}`."""
    docs: bool = False
    requires_proxy_auth: bool = False
    port: int | None = None
    """Port a `web_server` function's server binds inside its container."""
    startup_timeout: float = 5.0
    """How long a `web_server` container waits for its port before failing."""
    region: str | None = None
    """Routing region (endpoints' `--routing-region`): that region's proxy serves it too."""


ImageOp = Literal[
    "pip_install",
    "uv_pip_install",
    "env",
    "run_commands",
    "add_local_python_source",
    "add_local_dir",
    "add_local_file",
    "apt_install",
    "from_registry",
]


class ImageStep(_Model):
    op: ImageOp
    packages: list[str] = Field(default_factory=list)
    extra_options: list[str] = Field(default_factory=list)
    env: dict[str, str] = Field(default_factory=dict)
    commands: list[str] = Field(default_factory=list)
    modules: list[str] = Field(default_factory=list)
    bundle_path: str | None = None
    """Where the step's local files sit inside the uploaded bundle (add_local_*)."""
    remote_path: str | None = None
    digest: str | None = None
    """Content hash of the local files, so that editing them changes the image hash."""
    reference: str | None = None
    """Registry reference for `from_registry` (recorded so that the error can name it)."""


class ImageSpec(_Model):
    python_version: str | None = None
    steps: list[ImageStep] = Field(default_factory=list)

    def content_hash(self) -> str:
        payload = self.model_dump_json().encode()
        return hashlib.sha256(payload).hexdigest()[:16]

    @property
    def needs_environment(self) -> bool:
        """Whether the image needs its own virtual environment (anything beyond local files)."""
        return any(step.op not in ("add_local_python_source", "add_local_dir", "add_local_file", "env")
                   for step in self.steps)


class SecretSpec(_Model):
    name: str | None = None
    """Named secret stored on the server (`Secret.from_name`)."""
    required_keys: list[str] = Field(default_factory=list)
    values: dict[str, str] | None = None
    """Inline values (`Secret.from_dict`, `from_dotenv`): sent at deploy, never stored in specs or listed."""


class AutoscalerSettings(_Model):
    min_containers: int = 0
    max_containers: int | None = None
    buffer_containers: int = 0
    scaledown_window: float = 60.0
    max_inputs: int = 1
    target_inputs: int | None = None

    @property
    def effective_target(self) -> int:
        return self.target_inputs or self.max_inputs


class Resources(_Model):
    cpu: float | None = None
    memory: int | None = None
    """MiB."""
    gpu: str | None = None
    region: str | None = None
    """Run only on runtime nodes labelled with this region (`--colocate-compute`; Ray runtime)."""


class RetryPolicy(_Model):
    """`retries=` of a function: how often a failed call is tried again, and how long to wait between."""

    max_retries: int = 0
    backoff_coefficient: float = 2.0
    initial_delay: float = 1.0
    max_delay: float = 60.0


class ScheduleSpec(_Model):
    """`schedule=`: exactly one of a period in seconds or a cron expression (in `timezone`)."""

    period_seconds: float | None = None
    cron: str | None = None
    timezone: str = "UTC"


class FunctionSpec(_Model):
    tag: str
    """Name of the function inside the app: `f`, or `Cls.method` for a method of `@app.cls`."""
    qualname: str
    """Attribute path of the raw function or class in the app module (`f` or `Cls`)."""
    cls_name: str | None = None
    method_name: str | None = None
    web: WebConfig | None = None
    is_generator: bool = False
    image: ImageSpec = Field(default_factory=ImageSpec)
    secrets: list[SecretSpec] = Field(default_factory=list)
    env: dict[str, str] = Field(default_factory=dict)
    resources: Resources = Field(default_factory=Resources)
    timeout: float = 300.0
    startup_timeout: float | None = None
    autoscaler: AutoscalerSettings = Field(default_factory=AutoscalerSettings)
    volumes: dict[str, str] = Field(default_factory=dict)
    """Mount path → volume name."""
    create_volumes: list[str] = Field(default_factory=list)
    """Volumes of `volumes` that the deploy creates when missing (`create_if_missing=True`)."""
    retries: RetryPolicy | None = None
    schedule: ScheduleSpec | None = None


class AppSpec(_Model):
    name: str
    entry_file: str
    """Path of the app file inside the bundle (for example `app.py`)."""
    module_name: str
    """Module name the container imports the entry file as."""
    functions: list[FunctionSpec]


class DeployRequest(_Model):
    app: AppSpec
    bundle: str
    """Base64 of a gzipped tar of the entry file and the image steps' local files."""
    ephemeral: bool = False
    environment: str = "main"


class DeployedFunction(_Model):
    tag: str
    label: str | None
    url: str | None
    requires_proxy_auth: bool = False


class DeployResponse(_Model):
    app_id: str
    name: str
    version: int
    functions: list[DeployedFunction]


AppState = Literal["deployed", "ephemeral", "stopped"]


class AppInfo(_Model):
    app_id: str
    name: str
    environment: str
    state: AppState
    version: int
    created_at: float
    functions: list[DeployedFunction]
    containers: int = 0


class Mount(_Model):
    source: str
    target: str
    read_only: bool = True


class ContainerSpec(_Model):
    """Everything a runtime needs to start one container. Holds no secret values."""

    container_id: str
    app_id: str
    app_name: str
    version: int
    function_id: str
    function: FunctionSpec
    module_name: str
    entry_file: str
    bundle_dir: str
    """Directory holding the unpacked bundle; the container imports the entry file from it."""
    python: str
    """Interpreter of the image's environment."""
    python_path: list[str] = Field(default_factory=list)
    env: dict[str, str] = Field(default_factory=dict)
    workdir: str
    socket_path: str
    """Unix socket the container serves HTTP on; the proxy connects to it."""
    log_path: str
    mounts: list[Mount] = Field(default_factory=list)


class Route(_Model):
    """One entry of the routing table pushed from the control plane to the proxy."""

    host_label: str
    """`{workspace}[-{env}]--{label}`: the first DNS label of the function's host."""
    function_id: str
    app_id: str
    app_name: str
    tag: str
    environment: str
    requires_proxy_auth: bool
    timeout: float
    max_inputs: int
    region: str | None = None
    """Routing region: a regional proxy (`shipyard proxy --region`) serves the routes of its region."""


class SecretInfo(_Model):
    name: str
    environment: str
    keys: list[str]
    created_at: float


class ProxyTokenInfo(_Model):
    token_id: str
    environment: str
    created_at: float
    revoked: bool = False


class ProxyTokenCreated(_Model):
    token_id: str
    token_secret: str
    environment: str
