"""`Dict`: a persistent key-value store shared by every container and client, kept by the control plane.

Keys and values are cloudpickled; equal keys must pickle to equal bytes (true of str, int, bytes, tuples).
"""

from __future__ import annotations

import base64
from collections.abc import Iterator, Mapping
from typing import Any

import cloudpickle

from .._client import control_plane, current_environment, quote
from .._labels import validate_object_name
from ..exceptions import InvalidError

_MISSING = object()


def _encode(obj: Any, what: str) -> str:
    try:
        return base64.b64encode(cloudpickle.dumps(obj)).decode()
    except Exception as exc:
        raise InvalidError(f"The Dict {what} cannot be pickled: {exc!r}") from None


def _decode(text: str) -> Any:
    return cloudpickle.loads(base64.b64decode(text))


class Dict:
    def __init__(self, name: str, *, environment_name: str | None, create_if_missing: bool) -> None:
        self.name = name
        self.environment_name = environment_name
        self.create_if_missing = create_if_missing
        self._checked = False

    @classmethod
    def from_name(cls, name: str, *, environment_name: str | None = None,
                  create_if_missing: bool = False) -> Dict:
        """A reference to a named Dict; it is looked up (or created) on first use."""
        validate_object_name(name, "dict")
        return cls(name, environment_name=environment_name, create_if_missing=create_if_missing)

    @staticmethod
    def delete(name: str, *, environment_name: str | None = None) -> None:
        control_plane().request("DELETE", f"/api/dicts/{quote(name)}",
                                params={"env": environment_name or current_environment()})

    def __repr__(self) -> str:
        return f"Dict.from_name({self.name!r})"

    def _op(self, op: str, **body: Any) -> dict[str, Any]:
        params = {"env": self.environment_name or current_environment()}
        client = control_plane()
        if not self._checked:
            create = "true" if self.create_if_missing else "false"
            client.request("POST", f"/api/dicts/{quote(self.name)}",
                           params=params | {"create_if_missing": create})
            self._checked = True
        answer: dict[str, Any] = client.request("POST", f"/api/dicts/{quote(self.name)}/{op}", params=params,
                                                json_body=body).json()
        return answer

    def get(self, key: Any, default: Any = None) -> Any:
        answer = self._op("get", key=_encode(key, "key"))
        return _decode(answer["value"]) if answer["found"] else default

    def __getitem__(self, key: Any) -> Any:
        value = self.get(key, _MISSING)
        if value is _MISSING:
            raise KeyError(key)
        return value

    def put(self, key: Any, value: Any, *, skip_if_exists: bool = False) -> bool:
        """Store `value`; with `skip_if_exists`, only if the key is new. Returns whether it was written."""
        answer = self._op("put", key=_encode(key, "key"), value=_encode(value, "value"),
                          skip_if_exists=skip_if_exists)
        return bool(answer["written"])

    def __setitem__(self, key: Any, value: Any) -> None:
        self.put(key, value)

    def update(self, other: Mapping[Any, Any] | None = None, **kwargs: Any) -> None:
        for key, value in {**dict(other or {}), **kwargs}.items():
            self.put(key, value)

    def pop(self, key: Any, default: Any = _MISSING) -> Any:
        answer = self._op("pop", key=_encode(key, "key"))
        if answer["found"]:
            return _decode(answer["value"])
        if default is _MISSING:
            raise KeyError(key)
        return default

    def __delitem__(self, key: Any) -> None:
        self.pop(key)

    def contains(self, key: Any) -> bool:
        return bool(self._op("get", key=_encode(key, "key"))["found"])

    def __contains__(self, key: Any) -> bool:
        return self.contains(key)

    def len(self) -> int:
        return int(self._op("len")["len"])

    def __len__(self) -> int:
        return self.len()

    def items(self) -> Iterator[tuple[Any, Any]]:
        for key, value in self._op("items")["items"]:
            yield _decode(key), _decode(value)

    def keys(self) -> Iterator[Any]:
        for key, _ in self.items():
            yield key

    def values(self) -> Iterator[Any]:
        for _, value in self.items():
            yield value

    def __iter__(self) -> Iterator[Any]:
        return self.keys()

    def clear(self) -> None:
        self._op("clear")
