"""Label rules: validation, default labels, host labels with the hosted product's truncation."""

from __future__ import annotations

import hashlib

import pytest

from shipyard._labels import default_label, host_label, slugify, validate_label, validate_object_name
from shipyard.exceptions import InvalidError


@pytest.mark.parametrize("label", ["a", "foo-bar", "speechify", "x1", "1x", "a-b-c", "a" * 63, "a--b"])
def test_valid_labels(label: str) -> None:
    validate_label(label)


@pytest.mark.parametrize(
    ("label", "reason"),
    [
        ("", "empty"),
        ("Foo", "lowercase"),
        ("foo_bar", "lowercase"),
        ("foo.bar", "lowercase"),
        ("foo bar", "lowercase"),
        ("-foo", "dash"),
        ("foo-", "dash"),
        ("123", "digits"),
        ("a" * 64, "64 characters"),
        ("ünïcode", "lowercase"),
    ],
)
def test_invalid_labels(label: str, reason: str) -> None:
    with pytest.raises(InvalidError, match=reason):
        validate_label(label)


def test_default_label_function() -> None:
    assert default_label("web-demo", "square") == "web-demo-square"


def test_default_label_slugs_app_and_function() -> None:
    assert default_label("Text_To_Speech", "flask_app") == "text-to-speech-flask-app"
    assert default_label("my.app", "f") == "my-app-f"


def test_default_label_class_method() -> None:
    assert default_label("llm", "Model.Generate") == "llm-model-generate"


def test_default_label_strips_edge_dashes() -> None:
    assert default_label("_private", "f_") == "private-f"


def test_slugify() -> None:
    assert slugify("ECorp") == "ecorp"
    assert slugify("a_b.c d") == "a-b-c-d"


def test_host_label_main_environment() -> None:
    assert host_label("ecorp", "main", "text-to-speech-flask-app") == "ecorp--text-to-speech-flask-app"


def test_host_label_other_environment() -> None:
    assert host_label("ecorp", "prod", "speechify") == "ecorp-prod--speechify"


def test_host_label_dev() -> None:
    assert host_label("ecorp", "main", "web-demo-f", dev=True) == "ecorp--web-demo-f-dev"
    assert host_label("ecorp", "staging", "f", dev=True) == "ecorp-staging--f-dev"


def test_host_label_slugs_workspace_and_environment() -> None:
    assert host_label("ECorp", "Dev_Env", "f") == "ecorp-dev-env--f"


def test_host_label_exactly_63_is_kept() -> None:
    label = "a" * (63 - len("ws--"))
    assert host_label("ws", "main", label) == f"ws--{label}"


def test_host_label_truncated_with_hash() -> None:
    label = "text-to-speech-really-really-realllly-long-function-name-that-goes-on"
    full = f"ecorp--{label}"
    result = host_label("ecorp", "main", label)
    digest = hashlib.sha256(full.encode()).hexdigest()[:6]
    assert result == f"{full[:56]}-{digest}"
    assert len(result) == 63


def test_host_label_truncated_dev_keeps_suffix() -> None:
    label = "text-to-speech-really-really-realllly-long-function-name"
    full = f"ecorp--{label}-dev"
    assert len(full) == 67
    result = host_label("ecorp", "main", label, dev=True)
    digest = hashlib.sha256(full.encode()).hexdigest()[:6]
    assert result == f"{full[:52]}-{digest}-dev"
    assert len(result) == 63
    assert result.endswith("-dev")


def test_host_label_truncation_is_distinct_per_label() -> None:
    base = "x" * 70
    assert host_label("ws", "main", base + "a") != host_label("ws", "main", base + "b")


@pytest.mark.parametrize("name", ["web-demo", "my_app", "App.v2", "a" * 64])
def test_valid_object_names(name: str) -> None:
    validate_object_name(name, "app")


@pytest.mark.parametrize("name", ["", "my app", "a/b", "a" * 65, "é"])
def test_invalid_object_names(name: str) -> None:
    with pytest.raises(InvalidError, match="Invalid app name"):
        validate_object_name(name, "app")
