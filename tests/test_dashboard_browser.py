"""The dashboard in a real headless Chromium (Debian's build, driven by Playwright) against a real server.

Screenshots of every page land in test-artifacts/screenshots (git-ignored) for a human to look at.
"""

from __future__ import annotations

import re
import shutil
from collections.abc import Iterator

import httpx
import pytest

from shipyard.endpoints._hardware import installed_engines

from .conftest import ROOT, Platform, free_port

sync_api = pytest.importorskip("playwright.sync_api")
CHROMIUM = "/usr/bin/chromium"
if shutil.which(CHROMIUM) is None:
    pytest.skip("Debian chromium is not installed (scripts/install-system-deps.sh)", allow_module_level=True)

SCREENSHOTS = ROOT / "test-artifacts" / "screenshots"
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync"]
XSS = "<script>window.__pwned = 1</script>"
APP_SOURCE = f'''
from shipyard import App, web_endpoint

app = App("dash-demo")


@app.function()
@web_endpoint()
def hello():
    print("{XSS} handled a request", flush=True)
    return "hi"
'''


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Platform]:
    home = tmp_path_factory.mktemp("dash-home")
    platform = Platform(home=home, port=free_port())
    platform.start()
    yield platform
    platform.stop()


@pytest.fixture(scope="module")
def browser() -> Iterator[sync_api.Browser]:
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    with sync_api.sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True)
        yield chromium
        chromium.close()


@pytest.fixture
def page(browser: sync_api.Browser) -> Iterator[sync_api.Page]:
    context = browser.new_context(viewport={"width": 1280, "height": 860})
    tab = context.new_page()
    tab.set_default_timeout(15_000)
    yield tab
    context.close()


def login(page: sync_api.Page, server: Platform, target: str = "/dashboard/apps") -> None:
    page.goto(server.url + target)
    assert "/dashboard/login" in page.url
    page.fill("input[name=token]", server.admin_token)
    page.click("button[type=submit]")
    page.wait_for_url(re.compile(re.escape(target) + r"(\?.*)?$"))


def shot(page: sync_api.Page, name: str) -> None:
    page.screenshot(path=str(SCREENSHOTS / f"{name}.png"), full_page=True)


def test_pages_without_session_redirect_to_login(server: Platform) -> None:
    with httpx.Client(base_url=server.url) as client:
        for path in ("/dashboard/apps", "/dashboard/tokens", "/dashboard/secrets"):
            response = client.get(path)
            assert response.status_code == 303
            assert response.headers["location"].startswith("/dashboard/login?next=")
        assert client.get("/dashboard/api/apps/ap-x").status_code == 401
        forged = client.post("/dashboard/tokens/create", data={"csrf_token": "x"})
        assert forged.status_code == 303 and forged.headers["location"] == "/dashboard/login"
        bad = client.get("/dashboard/apps", headers={"Cookie": f"shipyard_session={server.admin_token}"})
        assert bad.status_code == 303


def test_wrong_credential_is_refused(server: Platform, page: sync_api.Page) -> None:
    page.goto(server.url + "/dashboard/login")
    page.fill("input[name=token]", server.admin_token + "x")
    with page.expect_response(lambda r: r.url.endswith("/dashboard/login")) as answer:
        page.click("button[type=submit]")
    assert answer.value.status == 401
    assert "Wrong admin credential" in page.inner_text("[role=alert]")
    assert not [c for c in page.context.cookies() if c["name"] == "shipyard_session"]
    shot(page, "login-refused")
    page.goto(server.url + "/dashboard/apps")
    assert "/dashboard/login" in page.url


def test_session_cookie_is_http_only_and_strict(server: Platform, page: sync_api.Page) -> None:
    login(page, server)
    (cookie,) = [c for c in page.context.cookies() if c["name"] == "shipyard_session"]
    assert cookie["httpOnly"] and cookie["sameSite"] == "Strict"
    assert server.admin_token not in cookie["value"]
    # A form POST with the session but without the page's CSRF token is refused.
    response = page.request.post(server.url + "/dashboard/tokens/create", form={"csrf_token": "forged"})
    assert response.status == 403
    page.click("text=Sign out")
    page.wait_for_url(re.compile(r"/dashboard/login$"))
    page.goto(server.url + "/dashboard/secrets")
    assert "/dashboard/login" in page.url


def test_app_page_shows_url_and_a_container_after_a_request(
    server: Platform, page: sync_api.Page, app_file
) -> None:  # type: ignore[no-untyped-def]
    urls = server.deploy(app_file(APP_SOURCE))
    url = urls["hello"]
    login(page, server)
    page.click("text=dash-demo")
    page.wait_for_url(re.compile(r"/dashboard/apps/ap-"))
    assert page.inner_text("#functions a.url") == url
    page.wait_for_selector("#containers >> text=scaled to zero")
    shot(page, "app-scaled-to-zero")
    with server.client(url) as client:
        assert client.get("/").json() == "hi"
    page.wait_for_selector("#containers .badge.running")
    page.wait_for_selector("#logs >> text=handled a request")
    page.wait_for_selector("#requests >> text=200: 1")
    # The app printed a <script> tag: it shows as text and never ran.
    assert XSS in page.inner_text("#logs")
    assert page.evaluate("window.__pwned") is None
    shot(page, "app-running")
    page.goto(server.url + "/dashboard/apps")
    assert url in page.inner_html("#apps") or "hello" in page.inner_text("#apps")
    shot(page, "apps")


def test_proxy_token_secret_is_shown_once_then_revoked(server: Platform, page: sync_api.Page) -> None:
    login(page, server, "/dashboard/tokens")
    page.click("#create-token")
    secret = page.inner_text("#token-secret")
    token_id = page.inner_text("#token-id")
    assert secret.startswith("ws-") and token_id.startswith("wk-")
    shot(page, "token-created")
    page.goto(server.url + "/dashboard/tokens")
    assert secret not in page.content()
    assert token_id in page.inner_text("#tokens")
    page.on("dialog", lambda dialog: dialog.accept())
    page.click(f"#tokens tr:has-text('{token_id}') button:has-text('Revoke')")
    page.wait_for_selector(f"#tokens tr:has-text('{token_id}') >> text=revoked")
    shot(page, "tokens")
    listed = server.api("GET", "/api/proxy-tokens").json()
    assert [t["revoked"] for t in listed if t["token_id"] == token_id] == [True]


def test_secrets_show_names_and_keys_never_values(server: Platform, page: sync_api.Page) -> None:
    server.cli("secret", "create", "dash-secret", "API_KEY=super-secret-value-123")
    login(page, server, "/dashboard/secrets")
    table = page.inner_text("#secrets")
    assert "dash-secret" in table and "API_KEY" in table
    assert "super-secret-value-123" not in page.content()
    shot(page, "secrets")


def test_user_strings_render_as_text(server: Platform, page: sync_api.Page) -> None:
    # Environment names are free text; one holding markup is shown escaped wherever it appears.
    server.api("POST", "/api/proxy-tokens", params={"env": XSS})
    login(page, server)
    page.goto(server.url + "/dashboard/tokens?" + httpx.QueryParams({"env": XSS}).__str__())
    assert XSS in page.inner_text("h1")
    assert page.evaluate("window.__pwned") is None
    assert "<script>window.__pwned" not in page.content().replace("&lt;script&gt;", "")


def test_endpoint_form_rejects_markup_in_name_as_text(server: Platform, page: sync_api.Page) -> None:
    login(page, server, "/dashboard/endpoints")
    page.fill("input[name=name]", XSS)
    with page.expect_response(lambda r: "/dashboard/endpoints/create" in r.url) as answer:
        page.click("#create-endpoint-button")
    assert answer.value.status == 400
    assert XSS in page.inner_text("[role=alert]")
    assert page.evaluate("window.__pwned") is None
    # What was typed is kept in the form, as text.
    assert page.input_value("input[name=name]") == XSS
    shot(page, "endpoint-form-error")


def _require_cpu_engine() -> None:
    if "llama.cpp" not in installed_engines():
        pytest.skip("the CPU engine for the bundled model (llama.cpp) is not installed; run `make install`")


def _create_endpoint(page: sync_api.Page, server: Platform, name: str) -> str:
    """Create an unauthenticated endpoint for the bundled model through the form; return its page URL."""
    login(page, server, "/dashboard/endpoints")
    page.select_option("#model", "HuggingFaceTB/SmolLM2-135M-Instruct")
    page.fill("input[name=name]", name)
    page.check("input[name=unauthenticated]")
    page.click("#create-endpoint-button")
    page.wait_for_url(re.compile(r"/dashboard/endpoints/ep-"))
    return page.url


def test_endpoint_created_from_form_comes_online_then_stops(server: Platform, page: sync_api.Page) -> None:
    _require_cpu_engine()
    _create_endpoint(page, server, "smol-dash")
    shot(page, "endpoint-provisioning")
    # The page updates itself (no reload) through provisioning and loading to ready.
    page.wait_for_selector("#status.badge.ready", timeout=240_000)
    page.wait_for_selector("#timeline li.done >> text=ready")
    page.wait_for_selector("#containers .badge.running")
    url = page.inner_text("#endpoint-url")
    assert "curl " + url + "/v1/chat/completions" in page.inner_text("#curl-snippet")
    assert f'base_url="{url}/v1"' in page.inner_text("#openai-snippet")
    shot(page, "endpoint-ready")

    # Autoscaling overrides apply to the running endpoint without a redeploy.
    page.fill("#scale-form input[name=max_containers]", "2")
    page.fill("#scale-form input[name=scaledown_window]", "300")
    page.click("#scale-form button[type=submit]")
    page.wait_for_selector("#scale-form")
    assert page.input_value("#scale-form input[name=max_containers]") == "2"
    assert page.input_value("#scale-form input[name=scaledown_window]") == "300.0"
    assert "scaling of serve changed: min 0, max 2" in page.inner_text("#logs")
    endpoint_page = page.url

    page.goto(server.url + "/dashboard/endpoints")
    row = "#endpoints tr:has-text('smol-dash')"
    page.wait_for_selector(f"{row} .badge.ready")
    shot(page, "endpoints")
    page.goto(endpoint_page)
    page.on("dialog", lambda dialog: dialog.accept())
    page.click("#stop-endpoint")
    page.wait_for_selector("#status.badge.stopped")
    page.wait_for_selector("#containers >> text=Stopped: no containers.", timeout=30_000)
    assert page.locator("#start-endpoint").count() == 1
    shot(page, "endpoint-stopped")
    listed = server.api("GET", "/api/endpoints").json()
    assert [e["status"] for e in listed if e["name"] == "smol-dash"] == ["stopped"]


def test_endpoint_page_counts_tokens_of_a_chat_completion(server: Platform, page: sync_api.Page) -> None:
    _require_cpu_engine()
    _create_endpoint(page, server, "smol-tokens")
    page.wait_for_selector("#status.badge.ready", timeout=240_000)
    url = page.inner_text("#endpoint-url")
    with server.client(url, timeout=120) as client:
        answer = client.post("/v1/chat/completions", json={
            "model": "HuggingFaceTB/SmolLM2-135M-Instruct", "max_tokens": 8,
            "messages": [{"role": "user", "content": "Say hi"}]})
    assert answer.status_code == 200, answer.text
    # Tokens reach the page through the meter (written every few seconds) without a reload.
    # Polled from here: the page's CSP (script-src 'self') forbids wait_for_function's eval.
    for _ in range(60):
        if int(page.inner_text("#stat-tokens-out") or 0) > 0:
            break
        page.wait_for_timeout(500)
    assert int(page.inner_text("#stat-tokens-out")) > 0
    assert int(page.inner_text("#stat-tokens-in")) > 0
    shot(page, "endpoint-serving")
    page.on("dialog", lambda dialog: dialog.accept())
    page.click("#delete-endpoint")
    page.wait_for_url(re.compile(r"/dashboard/endpoints\?env=main$"))
    assert "smol-tokens" not in page.inner_text("#endpoints")


def test_usage_page_charts_compute_time_and_cost(server: Platform, page: sync_api.Page, app_file) -> None:  # type: ignore[no-untyped-def]
    urls = server.deploy(app_file(APP_SOURCE.replace("dash-demo", "dash-usage")))
    with server.client(urls["hello"]) as client:
        assert client.get("/").status_code == 200
    login(page, server, "/dashboard/usage?env=*")
    # The meter samples running containers every second; the page flushes it when it loads.
    for _ in range(20):
        if "dash-usage" in page.inner_text("#usage"):
            break
        page.wait_for_timeout(500)
        page.reload()
    assert "dash-usage" in page.inner_text("#usage")
    assert page.locator("#usage-chart rect").count() > 0
    assert float(page.inner_text("#total-cost").lstrip("$")) > 0
    shot(page, "usage")
    page.select_option("select[name=metric]", "seconds")
    page.select_option("select[name=group]", "environment")
    page.click("form.chart-controls button")
    page.wait_for_url(re.compile(r"metric=seconds"))
    assert page.locator("#usage-chart rect").count() > 0
    assert "main" in page.inner_text(".legend")
    shot(page, "usage-by-environment")
