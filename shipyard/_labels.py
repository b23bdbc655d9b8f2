"""Naming rules for web labels, host labels and object names (pure functions).

The rules follow the hosted product: a label is one DNS label (`[a-z0-9-]`, at most 63 characters, no leading
or trailing dash, not all digits); generated names are slugged; an overlong host label is cut to 56 characters
and joined by a dash to the first 6 hex digits of the SHA-256 of the full label.
"""

from __future__ import annotations

import hashlib
import re

from .exceptions import InvalidError

MAX_DNS_LABEL = 63
_HASH_CHARS = 6
_TRUNCATED_LENGTH = MAX_DNS_LABEL - _HASH_CHARS - 1
_DEV_SUFFIX = "-dev"

_LABEL_CHARS = re.compile(r"^[a-z0-9-]+$")
_INVALID_SLUG_CHARS = re.compile(r"[^a-z0-9-]")
_OBJECT_NAME = re.compile(r"^[a-zA-Z0-9_.-]{1,64}$")


def slugify(name: str) -> str:
    """Lowercase `name` and replace every character a DNS label cannot hold with a dash."""
    return _INVALID_SLUG_CHARS.sub("-", name.lower())


def validate_label(label: str) -> None:
    """Raise `InvalidError` unless `label` can be a user-chosen web label."""
    rules = "labels may contain only lowercase letters, digits and dashes, at most 63 characters"
    if not isinstance(label, str) or not label:
        raise InvalidError(f"Invalid label {label!r}: a label cannot be empty ({rules}).")
    if len(label) > MAX_DNS_LABEL:
        raise InvalidError(f"Invalid label {label!r}: it is {len(label)} characters long ({rules}).")
    if not _LABEL_CHARS.match(label):
        raise InvalidError(f"Invalid label {label!r}: {rules}.")
    if label.startswith("-") or label.endswith("-"):
        raise InvalidError(f"Invalid label {label!r}: a label cannot start or end with a dash.")
    if label.isdigit():
        raise InvalidError(f"Invalid label {label!r}: a label cannot be only digits.")


def default_label(app_name: str, tag: str) -> str:
    """The label a web function gets when it names none: `{app}-{function}`, or `{app}-{cls}-{method}`."""
    label = slugify(f"{app_name}-{tag.replace('.', '-')}").strip("-")
    if not label:
        raise InvalidError(f"Cannot derive a web label from app {app_name!r} and function {tag!r}.")
    return label


def host_label(workspace: str, environment: str, label: str, *, dev: bool = False) -> str:
    """The first DNS label of a web function's host name.

    `{workspace}--{label}` in the environment `main`, `{workspace}-{environment}--{label}` elsewhere,
    with `-dev` after the label for `serve`. A result longer than 63 characters is truncated to 56
    characters plus a dash and a 6-digit hash of the full label; `-dev` stays at the end so that a
    development URL is still recognisable.
    """
    source = slugify(workspace) if environment == "main" else slugify(f"{workspace}-{environment}")
    base = f"{source}--{slugify(label)}"
    suffix = _DEV_SUFFIX if dev else ""
    full = base + suffix
    if len(full) <= MAX_DNS_LABEL:
        return full
    digest = hashlib.sha256(full.encode()).hexdigest()[:_HASH_CHARS]
    return f"{base[: _TRUNCATED_LENGTH - len(suffix)]}-{digest}{suffix}"


def validate_object_name(name: str, kind: str) -> None:
    """Raise `InvalidError` unless `name` is a valid app or secret name (the hosted product's rule)."""
    if not isinstance(name, str) or not _OBJECT_NAME.match(name):
        raise InvalidError(
            f"Invalid {kind} name {name!r}: names may contain only letters, digits, dashes, periods and "
            "underscores, and be at most 64 characters long."
        )
