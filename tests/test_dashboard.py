"""Pure pieces of the dashboard: form parsing, the status timeline, redirects, sessions, the usage chart."""

from __future__ import annotations

import time

import pytest
from starlette.requests import Request

from shipyard.dashboard._auth import SESSION_COOKIE, DashboardAuth
from shipyard.dashboard._chart import build_chart, format_value
from shipyard.dashboard._endpoint_routes import _create_request, _scale_changes, _timeline
from shipyard.dashboard._routes import _safe_next
from shipyard.dashboard._web import make_templates
from shipyard.endpoints import EndpointInfo
from shipyard.exceptions import InvalidError


def _request(cookie: str | None) -> Request:
    headers = [] if cookie is None else [(b"cookie", f"{SESSION_COOKIE}={cookie}".encode())]
    return Request({"type": "http", "method": "GET", "path": "/", "headers": headers, "query_string": b""})


def test_session_is_derived_from_the_admin_token_only() -> None:
    auth = DashboardAuth("admin-token")
    assert auth.login("wrong") is None
    assert auth.login("") is None
    session = auth.login("admin-token")
    assert session is not None and "admin-token" not in session
    assert auth.is_signed_in(_request(session))
    assert not auth.is_signed_in(_request(session[:-1] + "0"))
    assert not auth.is_signed_in(_request("admin-token"))
    assert not auth.is_signed_in(_request(None))
    # Another server process (another key) does not accept this session.
    assert not DashboardAuth("admin-token").is_signed_in(_request(session))
    assert auth.csrf_ok(auth.csrf_token())
    assert not auth.csrf_ok(None) and not auth.csrf_ok(session)


@pytest.mark.parametrize("target", ["//evil.example/x", "https://evil.example/", "/api/apps", "", None,
                                    "/dashboard\\..\\x"])
def test_login_redirects_only_inside_the_dashboard(target: str | None) -> None:
    assert _safe_next(target) == "/dashboard/apps"


def test_login_keeps_a_dashboard_target() -> None:
    assert _safe_next("/dashboard/tokens?env=dev") == "/dashboard/tokens?env=dev"


def test_create_form_maps_to_endpoint_create() -> None:
    request = _create_request({
        "model": "HuggingFaceTB/SmolLM2-135M-Instruct", "name": " smol ", "custom_hf_repo": "",
        "routing_region": "eu-west", "colocate_compute": "1", "min_containers": "1", "max_containers": "",
        "scaledown_window": "30", "environment": "dev", "csrf_token": "x",
    })
    assert request.name == "smol" and request.routing_region == "eu-west" and request.colocate_compute
    assert not request.unauthenticated
    assert (request.min_containers, request.max_containers, request.scaledown_window) == (1, None, 30.0)
    assert request.environment == "dev" and request.custom_hf_repo is None


def test_create_form_errors_are_invalid_errors() -> None:
    with pytest.raises(InvalidError, match="routing_region"):
        _create_request({"model": "m", "routing_region": "mars"})
    with pytest.raises(InvalidError, match="min_containers"):
        _create_request({"model": "m", "min_containers": "-1"})


def test_scale_changes() -> None:
    assert _scale_changes({"min_containers": "2", "max_containers": "", "scaledown_window": "90"}) == {
        "min_containers": 2, "max_containers": None, "scaledown_window": 90.0}
    with pytest.raises(InvalidError):
        _scale_changes({"min_containers": "two"})


def _info(status: str, source: str = "bundled-gguf") -> EndpointInfo:
    return EndpointInfo(
        endpoint_id="ep-1", name="e", environment="main", model="m", served_model_name="m", status=status,  # type: ignore[arg-type]
        url="http://x", dashboard_url="http://d", region="us-west", colocate_compute=False, recipe="r",
        engine="llama.cpp", requires_proxy_auth=True, weights_source=source, created_at=0.0,
    )


def test_timeline_steps() -> None:
    def states(status: str, source: str = "bundled-gguf") -> list[str]:
        return [f"{s['name']}:{s['state']}" for s in _timeline(_info(status, source))]

    assert states("provisioning") == ["provisioning:current", "loading:pending", "ready:pending"]
    assert states("loading") == ["provisioning:done", "loading:current", "ready:pending"]
    assert states("ready") == ["provisioning:done", "loading:done", "ready:done"]
    assert states("idle") == ["provisioning:done", "loading:done", "ready:done"]
    assert states("downloading", "huggingface") == [
        "provisioning:done", "downloading:current", "loading:pending", "ready:pending"]
    assert states("failed")[0] == "provisioning:failed"


def test_chart_stacks_series_per_bucket() -> None:
    now = time.time()
    chart = build_chart({"app a (main)": {0: 1.0, 59: 2.0}, "endpoint b (main)": {59: 1.0}},
                        metric="cost", span=3600, bucket=60, now=now)
    assert len(chart.bars) == 3
    last = sorted((b for b in chart.bars if b.x > 900), key=lambda b: b.series)
    assert last[0].y > last[1].y  # the second series sits on top of the first
    assert [name for name, _ in chart.series] == ["app a (main)", "endpoint b (main)"]
    assert chart.y_ticks[-1].label == "$5.00"
    assert build_chart({}, metric="tokens", span=3600, bucket=60, now=now).bars == []


def test_format_value_keeps_small_costs_visible() -> None:
    assert format_value(0.0000213, "cost") == "$0.000021"
    assert format_value(1234.5, "cost") == "$1,234.50"
    assert format_value(0, "cost") == "$0"


def test_templates_escape_user_strings() -> None:
    templates = make_templates()
    html = templates.env.get_template("error.html").render(
        message="<script>alert(1)</script>", prefix="/dashboard", env="<b>", active="", signed_in=False,
        csrf_field="c", csrf_token="t")
    assert "<script>alert(1)</script>" not in html
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in html
