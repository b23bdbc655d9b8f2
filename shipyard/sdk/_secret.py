"""`Secret`: environment variables injected into containers."""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path

from dotenv import dotenv_values

from .._labels import validate_object_name
from ..exceptions import InvalidError
from ..spec import SecretSpec


class Secret:
    """A set of environment variables. Build one with `from_name`, `from_dict` or `from_dotenv`."""

    def __init__(self, resolve: Callable[[], SecretSpec], description: str) -> None:
        self._resolve = resolve
        self._description = description

    @property
    def spec(self) -> SecretSpec:
        """The wire form; a `.env` file is read here (at deploy), not when the app file is imported."""
        return self._resolve()

    def __repr__(self) -> str:
        return f"Secret.{self._description}"

    @classmethod
    def from_name(cls, name: str, *, required_keys: Sequence[str] = ()) -> Secret:
        """A secret stored on the server; deploying fails if it lacks one of `required_keys`."""
        validate_object_name(name, "secret")
        keys = list(required_keys)
        if not all(isinstance(key, str) for key in keys):
            raise InvalidError(f"required_keys must be strings, not {required_keys!r}.")
        spec = SecretSpec(name=name, required_keys=keys)
        return cls(lambda: spec.model_copy(deep=True), f"from_name({name!r})")

    @classmethod
    def from_dict(cls, env_dict: Mapping[str, str | None]) -> Secret:
        """Inline values; `None` values are left out, like the hosted product does."""
        if not isinstance(env_dict, Mapping):
            raise InvalidError(f"Secret.from_dict takes a dict of strings, not {type(env_dict).__name__}.")
        values: dict[str, str] = {}
        for key, value in env_dict.items():
            if not isinstance(key, str) or not isinstance(value, str | None):
                raise InvalidError(
                    f"Secret.from_dict: {key!r} has a value of type {type(value).__name__}; "
                    "values must be str."
                )
            if value is not None:
                values[key] = value
        keys = sorted(values)
        return cls(lambda: SecretSpec(values=dict(values)), f"from_dict(keys={keys})")

    @classmethod
    def from_dotenv(cls, path: str | os.PathLike[str] | None = None, *, filename: str = ".env") -> Secret:
        """Values of a `.env` file, searched from `path` (a file such as `__file__`, or a folder; default the
        current directory) upwards."""
        start = Path.cwd() if path is None else Path(path).expanduser().absolute()

        def resolve() -> SecretSpec:
            folder = start.parent if start.is_file() else start
            for candidate in (folder, *folder.parents):
                env_file = candidate / filename
                if env_file.is_file():
                    loaded = dotenv_values(env_file)
                    return SecretSpec(values={k: v for k, v in loaded.items() if v is not None})
            raise InvalidError(f"Secret.from_dotenv: no {filename} file in {folder} or any folder above it.")

        return cls(resolve, f"from_dotenv({str(start)!r}, filename={filename!r})")

