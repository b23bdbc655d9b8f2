"""`Function`: what `@app.function` returns; holds the user's callable and builds its `FunctionSpec`."""

from __future__ import annotations

import inspect
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, NoReturn

from .._client import current_environment
from ..exceptions import InvalidError, ShipyardError
from ..spec import AutoscalerSettings, FunctionSpec, Resources, RetryPolicy, ScheduleSpec, WebConfig
from ._attrs import CONCURRENT_ATTR, Registered
from ._calls import CallMethods, RemoteFunction, bound_app
from ._image import Image
from ._schedule import Schedule
from ._secret import Secret
from ._volume import Volume, check_mount_path

if TYPE_CHECKING:
    from ._app import App


def _check_number(name: str, value: object, *, minimum: float, integer: bool, strict: bool = False) -> None:
    kinds: tuple[type, ...] = (int,) if integer else (int, float)
    ok = isinstance(value, kinds) and not isinstance(value, bool)
    if ok:
        assert isinstance(value, int | float)
        ok = value > minimum if strict else value >= minimum
    if not ok:
        bound = f"greater than {minimum}" if strict else f"at least {minimum}"
        kind = "an integer" if integer else "a number"
        raise InvalidError(f"Invalid {name}={value!r}: it must be {kind} {bound}.")


def _pick(new_name: str, new_value: Any, old_name: str, old_value: Any) -> Any:
    """Accept the older name of a setting, but not both names at once."""
    if old_value is None:
        return new_value
    if new_value is not None:
        raise InvalidError(f"Pass only `{new_name}=`: `{old_name}=` is its older name, and both were given.")
    return old_value


class Retries:
    """`retries=Retries(max_retries=3, backoff_coefficient=2.0, initial_delay=1.0, max_delay=60.0)`."""

    def __init__(self, *, max_retries: int, backoff_coefficient: float = 2.0, initial_delay: float = 1.0,
                 max_delay: float = 60.0) -> None:
        _check_number("max_retries", max_retries, minimum=0, integer=True)
        _check_number("backoff_coefficient", backoff_coefficient, minimum=1, integer=False)
        _check_number("initial_delay", initial_delay, minimum=0, integer=False)
        _check_number("max_delay", max_delay, minimum=0, integer=False)
        self.policy = RetryPolicy(max_retries=max_retries, backoff_coefficient=float(backoff_coefficient),
                                  initial_delay=float(initial_delay), max_delay=float(max_delay))


def parse_volumes(volumes: Mapping[str, object] | None) -> dict[str, Volume]:
    """Check `volumes=`: Volume objects at paths the hosted product allows."""
    parsed: dict[str, Volume] = {}
    for path, volume in (volumes or {}).items():
        if not isinstance(volume, Volume):
            raise InvalidError(f"volumes= maps mount paths to Volume objects (Volume.from_name(...)), "
                               f"not {volume!r}.")
        if not isinstance(path, str):
            raise InvalidError(f"Volume mount path {path!r} must be a string.")
        parsed[check_mount_path(path)] = volume
    return parsed


def _parse_retries(retries: object) -> RetryPolicy | None:
    if retries is None:
        return None
    if isinstance(retries, Retries):
        return retries.policy
    _check_number("retries", retries, minimum=0, integer=True)
    assert isinstance(retries, int)
    # A bare number retries at once, with the hosted product's default backoff.
    return RetryPolicy(max_retries=retries)


@dataclass
class FunctionOptions:
    """The settings of `@app.function(...)`/`@app.cls(...)`, validated."""

    image: Image | None = None
    secrets: list[Secret] = field(default_factory=list)
    env: dict[str, str] = field(default_factory=dict)
    resources: Resources = field(default_factory=Resources)
    timeout: float = 300.0
    startup_timeout: float | None = None
    autoscaler: AutoscalerSettings = field(default_factory=AutoscalerSettings)
    volumes: dict[str, Volume] = field(default_factory=dict)
    schedule: ScheduleSpec | None = None
    retries: RetryPolicy | None = None
    legacy_max_inputs: int | None = None
    """`allow_concurrent_inputs=`, the older form of `@concurrent(max_inputs=...)`."""

    @classmethod
    def parse(
        cls,
        *,
        image: Image | None,
        secrets: Sequence[Secret] | None,
        env: Mapping[str, str] | None,
        gpu: str | Sequence[str] | None,
        cpu: float | None,
        region: str | None,
        memory: int | None,
        timeout: float,
        startup_timeout: float | None,
        min_containers: int | None,
        max_containers: int | None,
        buffer_containers: int,
        scaledown_window: float | None,
        volumes: Mapping[str, object] | None,
        schedule: object,
        retries: object,
        keep_warm: int | None,
        concurrency_limit: int | None,
        container_idle_timeout: float | None,
        allow_concurrent_inputs: int | None,
    ) -> FunctionOptions:
        if image is not None and not isinstance(image, Image):
            raise InvalidError(f"image= takes an Image (for example Image.debian_slim()), not {image!r}.")
        secret_list = list(secrets or [])
        for secret in secret_list:
            if not isinstance(secret, Secret):
                raise InvalidError(f"secrets= takes a list of Secret objects, not {secret!r}.")
        env_dict = dict(env or {})
        if not all(isinstance(k, str) and isinstance(v, str) for k, v in env_dict.items()):
            raise InvalidError(f"env= takes a dict of strings to strings, not {env!r}.")
        parsed_volumes = parse_volumes(volumes)
        if schedule is not None and not isinstance(schedule, Schedule):
            raise InvalidError(f"schedule= takes Period(...) or Cron(...), not {schedule!r}.")

        min_c = _pick("min_containers", min_containers, "keep_warm", keep_warm)
        max_c = _pick("max_containers", max_containers, "concurrency_limit", concurrency_limit)
        window = _pick("scaledown_window", scaledown_window, "container_idle_timeout", container_idle_timeout)
        min_c = 0 if min_c is None else min_c
        window = 60.0 if window is None else window
        _check_number("min_containers", min_c, minimum=0, integer=True)
        if max_c is not None:
            _check_number("max_containers", max_c, minimum=1, integer=True)
            if min_c > max_c:
                raise InvalidError(f"min_containers ({min_c}) cannot exceed max_containers ({max_c}).")
        _check_number("buffer_containers", buffer_containers, minimum=0, integer=True)
        _check_number("scaledown_window", window, minimum=0, integer=False, strict=True)
        _check_number("timeout", timeout, minimum=0, integer=False, strict=True)
        if startup_timeout is not None:
            _check_number("startup_timeout", startup_timeout, minimum=0, integer=False, strict=True)
        if allow_concurrent_inputs is not None:
            _check_number("allow_concurrent_inputs", allow_concurrent_inputs, minimum=1, integer=True)

        if cpu is not None:
            _check_number("cpu", cpu, minimum=0, integer=False, strict=True)
        if memory is not None:
            _check_number("memory", memory, minimum=0, integer=True, strict=True)
        if region is not None and (not isinstance(region, str) or not region):
            raise InvalidError(f"region= takes a region name such as 'eu-west', not {region!r}.")
        if gpu is not None and not isinstance(gpu, str):
            gpus = list(gpu) if isinstance(gpu, Sequence) else []
            if not gpus or not all(isinstance(g, str) for g in gpus):
                raise InvalidError(f"gpu= takes a string such as 'A10G' or 'H100:2', not {gpu!r}.")
            # A list is an order of preference; the runtime receives it comma-separated.
            gpu = ",".join(gpus)

        return cls(
            image=image,
            secrets=secret_list,
            env=env_dict,
            resources=Resources(cpu=None if cpu is None else float(cpu), memory=memory, gpu=gpu,
                                region=region),
            timeout=float(timeout),
            startup_timeout=None if startup_timeout is None else float(startup_timeout),
            autoscaler=AutoscalerSettings(
                min_containers=min_c, max_containers=max_c, buffer_containers=buffer_containers,
                scaledown_window=float(window), max_inputs=allow_concurrent_inputs or 1,
            ),
            volumes=parsed_volumes,
            schedule=None if schedule is None else schedule.spec.model_copy(),
            retries=_parse_retries(retries),
            legacy_max_inputs=allow_concurrent_inputs,
        )

    def with_concurrency(self, owner: object, what: str) -> AutoscalerSettings:
        """The autoscaler settings once `@concurrent` on `owner` (a function or class) is applied."""
        settings: tuple[int, int | None] | None = getattr(owner, CONCURRENT_ATTR, None)
        autoscaler = self.autoscaler.model_copy()
        if settings is None:
            return autoscaler
        if self.legacy_max_inputs is not None:
            raise InvalidError(
                f"{what} has both `@concurrent(...)` and `allow_concurrent_inputs=`; keep only `@concurrent`."
            )
        autoscaler.max_inputs, autoscaler.target_inputs = settings
        return autoscaler


class Function(Registered, CallMethods):
    """A registered function of an `App`. `.raw_f` is the user's callable; `.spec` its wire description."""

    decorator = "@app.function()"

    def __init__(
        self,
        app: App,
        raw_f: Callable[..., Any],
        *,
        tag: str,
        qualname: str,
        options: FunctionOptions,
        autoscaler: AutoscalerSettings,
        web: WebConfig | None,
        cls_name: str | None = None,
        method_name: str | None = None,
    ) -> None:
        self.app = app
        self.raw_f = raw_f
        self.tag = tag
        self._qualname = qualname
        self._options = options
        self._autoscaler = autoscaler
        self._web = web
        self._cls_name = cls_name
        self._method_name = method_name
        self.__doc__ = raw_f.__doc__
        self.__wrapped__ = raw_f

    @property
    def web(self) -> WebConfig | None:
        return self._web

    @property
    def image(self) -> Image:
        """The image the function runs in: its own, else the app's, else a plain one."""
        return self._options.image or self.app.image or Image.debian_slim()

    @property
    def spec(self) -> FunctionSpec:
        """The wire form. Resolves images and secrets, so it reads local files: call it at deploy time."""
        secrets = [*self.app.secrets, *self._options.secrets]
        volumes = {**self.app.volumes, **self._options.volumes}
        return FunctionSpec(
            tag=self.tag,
            qualname=self._qualname,
            cls_name=self._cls_name,
            method_name=self._method_name,
            web=None if self._web is None else self._web.model_copy(),
            is_generator=inspect.isgeneratorfunction(self.raw_f) or inspect.isasyncgenfunction(self.raw_f),
            image=self.image.spec,
            secrets=[secret.spec for secret in secrets],
            env=dict(self._options.env),
            resources=self._options.resources.model_copy(),
            timeout=self._options.timeout,
            startup_timeout=self._options.startup_timeout,
            autoscaler=self._autoscaler.model_copy(),
            volumes={path: volume.name for path, volume in volumes.items()},
            create_volumes=sorted({v.name for v in volumes.values() if v.create_if_missing}),
            retries=None if self._options.retries is None else self._options.retries.model_copy(),
            schedule=None if self._options.schedule is None else self._options.schedule.model_copy(),
        )

    def local(self, *args: Any, **kwargs: Any) -> Any:
        """Call the function in this process."""
        if self._method_name is not None:
            raise ShipyardError(
                f"{self.tag}.local() is not supported: create an instance of the class and call the method."
            )
        return self.raw_f(*args, **kwargs)

    @classmethod
    def from_name(cls, app_name: str, name: str, *, environment_name: str | None = None) -> RemoteFunction:
        """A function of a deployed app; `NotFoundError` on the first call if there is none."""
        return RemoteFunction(app_name, name, environment_name)

    def _target(self) -> tuple[str, str, str]:
        name, _app_id = bound_app(self.app.bound_name or self.app.name, self.app.bound_id)
        if name is None:
            raise InvalidError(
                f"{self.tag} belongs to an App without a name: give the App a name and deploy it, or run it "
                "with `shipyard run`; or use Function.from_name(app_name, name)."
            )
        return name, self.app.bound_environment or current_environment(), self.tag

    def _local_web(self) -> bool:
        return self._web is not None

    def _app_id(self) -> str | None:
        return bound_app(self.app.bound_name or self.app.name, self.app.bound_id)[1]

    def __call__(self, *args: Any, **kwargs: Any) -> NoReturn:
        raise InvalidError(
            f"{self.tag} is a registered function and cannot be called directly: use "
            f"{self.tag}.local(...) to run it in this process."
        )

    def __repr__(self) -> str:
        return f"Function({self.tag!r})"
