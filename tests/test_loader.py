"""Loading app files: picking the App, clear errors, the deploy request and its bundle, the `modal` alias."""

from __future__ import annotations

import base64
import io
import json
import os
import subprocess
import sys
import tarfile
import textwrap
from pathlib import Path

import pytest

from shipyard import App, ExecutionError, InvalidError, NotFoundError
from shipyard.sdk import build_deploy_request, import_app_module, load_app
from shipyard.spec import DeployRequest

ROOT = Path(__file__).resolve().parent.parent


def write(path: Path, source: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(textwrap.dedent(source))
    return path


def bundle_files(request: DeployRequest) -> dict[str, bytes]:
    raw = base64.b64decode(request.bundle)
    with tarfile.open(fileobj=io.BytesIO(raw), mode="r:gz") as tar:
        return {m.name: tar.extractfile(m).read() for m in tar.getmembers()}  # type: ignore[union-attr]


def run_python(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    return subprocess.run(
        [sys.executable, *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=60
    )


WEB_APP = """
from shipyard import App, fastapi_endpoint

app = App("hello")

@app.function()
@fastapi_endpoint()
def f():
    return "Hello world!"
"""


# --- picking the App ---------------------------------------------------------------------------------------


def test_load_app_picks_variable_named_app(tmp_path: Path) -> None:
    file = write(tmp_path / "main.py", WEB_APP + "other = App('other')\n")
    app = load_app(file)
    assert isinstance(app, App) and app.name == "hello"
    assert list(app.registered_functions) == ["f"]


def test_load_app_picks_the_only_app(tmp_path: Path) -> None:
    file = write(tmp_path / "main.py", "from shipyard import App\nmy_app = App('solo')\nalias = my_app\n")
    assert load_app(file).name == "solo"


def test_load_app_without_app_fails(tmp_path: Path) -> None:
    with pytest.raises(InvalidError, match=r"No App found in main\.py"):
        load_app(write(tmp_path / "main.py", "x = 1\n"))


def test_load_app_with_several_apps_fails(tmp_path: Path) -> None:
    file = write(tmp_path / "main.py", "from shipyard import App\na = App('a')\nb = App('b')\n")
    with pytest.raises(InvalidError, match=r"several Apps \(a, b\)"):
        load_app(file)


# --- errors ------------------------------------------------------------------------------------------------


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(ExecutionError, match=r"App file not found: .*nope\.py"):
        load_app(tmp_path / "nope.py")


def test_syntax_error(tmp_path: Path) -> None:
    file = write(tmp_path / "broken.py", "from shipyard import App\napp = App(\ndef f(:\n")
    with pytest.raises(ExecutionError) as info:
        load_app(file)
    message = str(info.value)
    assert message.startswith("Syntax error in broken.py")
    assert "broken.py" in message and "line 3" in message and "SyntaxError" in message


def test_import_error_shows_user_traceback_only(tmp_path: Path) -> None:
    write(tmp_path / "helper.py", "import not_installed_package_xyz\n")
    file = write(tmp_path / "main.py", "from shipyard import App\napp = App()\nimport helper\n")
    with pytest.raises(ExecutionError) as info:
        load_app(file)
    message = str(info.value)
    assert message.startswith("Failed to import main.py:")
    assert 'main.py", line 3' in message and 'helper.py", line 1' in message
    assert "ModuleNotFoundError: No module named 'not_installed_package_xyz'" in message
    assert "_loader.py" not in message and "frozen importlib" not in message


def test_exception_and_sys_exit_at_import(tmp_path: Path) -> None:
    with pytest.raises(ExecutionError, match="ZeroDivisionError"):
        load_app(write(tmp_path / "main.py", "x = 1 / 0\n"))
    with pytest.raises(ExecutionError, match="SystemExit"):
        load_app(write(tmp_path / "main2.py", "import sys\nsys.exit(3)\n"))


def test_misuse_error_names_file_and_line(tmp_path: Path) -> None:
    file = write(
        tmp_path / "main.py",
        """
        from shipyard import App, web_endpoint

        app = App()

        @app.function()
        @web_endpoint
        def f():
            pass
        """,
    )
    with pytest.raises(InvalidError, match=r"^main\.py:7: .*Did you forget parentheses"):
        load_app(file)


# --- deploy requests and bundles ---------------------------------------------------------------------------


def test_deploy_request_fields(tmp_path: Path) -> None:
    file = write(tmp_path / "hello_app.py", WEB_APP)
    request = build_deploy_request(file, ephemeral=True, environment="dev")
    assert request.ephemeral is True and request.environment == "dev"
    assert request.app.name == "hello"
    assert request.app.entry_file == "hello_app.py"
    assert request.app.module_name == "hello_app"
    assert [f.tag for f in request.app.functions] == ["f"]
    assert DeployRequest.model_validate_json(request.model_dump_json()) == request


def test_app_name_resolution(tmp_path: Path) -> None:
    named = write(tmp_path / "a" / "my_file.py", WEB_APP)
    assert build_deploy_request(named, name="override").app.name == "override"
    unnamed = write(tmp_path / "b" / "my_file.py", WEB_APP.replace('App("hello")', "App()"))
    assert build_deploy_request(unnamed).app.name == "my_file"
    spaced = write(tmp_path / "c" / "my file.py", WEB_APP.replace('App("hello")', "App()"))
    with pytest.raises(InvalidError, match="pass --name"):
        build_deploy_request(spaced)
    request = build_deploy_request(spaced, name="ok")
    assert request.app.module_name == "my_file"
    with pytest.raises(InvalidError, match="Invalid app name"):
        build_deploy_request(named, name="bad name")


def test_module_name_avoids_shadowing(tmp_path: Path) -> None:
    file = write(tmp_path / "json.py", WEB_APP)
    request = build_deploy_request(file)
    assert request.app.module_name == "_shipyard_app_json"


def test_app_without_functions_fails(tmp_path: Path) -> None:
    file = write(tmp_path / "main.py", "from shipyard import App\napp = App('empty')\n")
    with pytest.raises(InvalidError, match="has no functions"):
        build_deploy_request(file)


def test_default_label_collision_detected_at_deploy(tmp_path: Path) -> None:
    file = write(
        tmp_path / "main.py",
        """
        from shipyard import App, fastapi_endpoint

        app = App()

        @app.function()
        @fastapi_endpoint()
        def model_x():
            pass

        @app.cls()
        class Model:
            @fastapi_endpoint()
            def x(self):
                pass
        """,
    )
    with pytest.raises(InvalidError, match="both use the web label 'main-model-x'"):
        build_deploy_request(file)


def test_bundle_holds_entry_local_modules_and_step_files(tmp_path: Path) -> None:
    project = tmp_path / "project"
    write(project / "helpers.py", "GREETING = 'hi'\n")
    write(project / "pkg" / "__init__.py", "")
    write(project / "pkg" / "sub.py", "from . import deep\n")
    write(project / "pkg" / "deep.py", "VALUE = 1\n")
    write(project / "pkg" / "lazy" / "__init__.py", "")
    write(project / "pkg" / "lazy" / "later.py", "# imported inside a handler\n")
    write(project / "pkg" / "notes.txt", "not python\n")
    write(project / "unused.py", "raise RuntimeError('never imported')\n")
    write(project / ".venv" / "lib" / "site-packages" / "vendored.py", "X = 1\n")
    write(project / "assets" / "index.html", "<h1>hi</h1>\n")
    write(project / "config.json", "{}\n")
    entry = write(
        project / "app.py",
        """
        import sys
        from pathlib import Path
        sys.path.append(str(Path(__file__).parent / ".venv" / "lib" / "site-packages"))

        import vendored
        import helpers
        import pkg.sub
        from shipyard import App, Image, asgi_app

        here = Path(__file__).parent
        image = (Image.debian_slim().add_local_dir(here / "assets", "/root/assets")
                 .add_local_file(here / "config.json", "/root/config.json"))
        app = App("bundled", image=image)

        @app.function()
        @asgi_app()
        def web():
            return None
        """,
    )
    request = build_deploy_request(entry)
    files = bundle_files(request)
    steps = request.app.functions[0].image.steps
    dir_path, file_path = steps[0].bundle_path, steps[1].bundle_path
    assert sorted(files) == sorted([
        "app.py", "helpers.py", "pkg/__init__.py", "pkg/sub.py", "pkg/deep.py", "pkg/lazy/__init__.py",
        "pkg/lazy/later.py",
        f"{dir_path}/index.html", str(file_path),
    ])
    assert files["helpers.py"] == b"GREETING = 'hi'\n"
    assert files[f"{dir_path}/index.html"] == b"<h1>hi</h1>\n"
    assert files[str(file_path)] == b"{}\n"
    # Deterministic: the same files give the same bundle.
    assert build_deploy_request(entry).bundle == request.bundle


def test_repeated_loads_do_not_reuse_local_modules(tmp_path: Path) -> None:
    source = """
    import helper
    from shipyard import App, fastapi_endpoint

    app = App(helper.NAME)

    @app.function()
    @fastapi_endpoint()
    def f():
        pass
    """
    for name in ("first", "second"):
        write(tmp_path / name / "helper.py", f"NAME = {name!r}\n")
        entry = write(tmp_path / name / "main.py", source)
        request = build_deploy_request(entry)
        assert request.app.name == name
        assert bundle_files(request)["helper.py"] == f"NAME = {name!r}\n".encode()
    assert "helper" not in sys.modules and "main" not in sys.modules


# --- import_app_module and the modal alias -----------------------------------------------------------------


def test_import_app_module_from_bundle_dir(tmp_path: Path) -> None:
    write(tmp_path / "util.py", "def double(x):\n    return 2 * x\n")
    write(
        tmp_path / "entry.py",
        """
        import modal
        from util import double

        app = modal.App("container-side")

        @app.function()
        @modal.fastapi_endpoint()
        def f(x: int):
            return double(x)
        """,
    )
    module = import_app_module(str(tmp_path), "entry.py", "_test_bundle_entry")
    try:
        assert sys.modules["_test_bundle_entry"] is module
        assert sys.path[0] == str(tmp_path)
        assert module.f.raw_f(21) == 42
        assert module.f.raw_f.__shipyard_web__.kind == "fastapi_endpoint"
    finally:
        sys.modules.pop("_test_bundle_entry", None)
        sys.modules.pop("util", None)
        sys.path.remove(str(tmp_path))


MODAL_SCRIPT = """
import modal
import modal.exception
from modal import App, Image, Secret, web_endpoint, asgi_app
from modal.exception import NotFoundError, InvalidError, AuthError, ExecutionError, Error

import shipyard

assert modal.App is shipyard.App and App is shipyard.App
assert modal.Image is shipyard.Image and modal.exception.NotFoundError is shipyard.NotFoundError
assert issubclass(InvalidError, Error) and Error is shipyard.ShipyardError
assert modal.exception is modal.exception and shipyard.__spec__.name == "shipyard"
try:
    modal.Sandbox
except AttributeError as exc:
    assert "Shipyard does not implement modal.Sandbox" in str(exc)
else:
    raise AssertionError("modal.Sandbox should not exist")
try:
    import modal.not_a_module
except ModuleNotFoundError:
    pass
else:
    raise AssertionError("modal.not_a_module should not exist")

app = App("modal-script", image=Image.debian_slim().pip_install("boto3"))

@app.function()
@web_endpoint()
def f():
    return "hi"

try:
    @app.function()
    @modal.web_endpoint
    def g():
        pass
except modal.exception.InvalidError:
    pass
print("ok", f.spec.tag)
"""


def test_modal_alias_in_a_fresh_interpreter(tmp_path: Path) -> None:
    script = write(tmp_path / "script.py", MODAL_SCRIPT)
    result = run_python("-c", f"from shipyard.sdk import install_modal_alias; install_modal_alias(); "
                        f"exec(open({str(script)!r}).read())", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "ok f"


def test_modal_exceptions_are_caught_by_shipyard_types() -> None:
    from shipyard.sdk import install_modal_alias

    install_modal_alias()
    import modal.exception  # type: ignore[import-not-found]

    with pytest.raises(NotFoundError):
        raise modal.exception.NotFoundError("x")


# --- the CLI entry -----------------------------------------------------------------------------------------


def test_cli_entry_prints_deploy_request(tmp_path: Path) -> None:
    source = "import modal\nprint('noise at import')\n" + WEB_APP.replace("from shipyard", "from modal")
    write(tmp_path / "main.py", source)
    result = run_python("-m", "shipyard.sdk.loader", "main.py", "--name", "cli-app", "--ephemeral",
                        "--env", "staging", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert "noise at import" in result.stderr
    request = DeployRequest.model_validate_json(result.stdout)
    assert request.app.name == "cli-app" and request.ephemeral and request.environment == "staging"
    assert json.loads(result.stdout)["app"]["functions"][0]["web"]["kind"] == "fastapi_endpoint"


def test_cli_entry_failure_exits_2_with_message(tmp_path: Path) -> None:
    write(tmp_path / "main.py", "import not_installed_package_xyz\n")
    result = run_python("-m", "shipyard.sdk.loader", "main.py", cwd=tmp_path)
    assert result.returncode == 2
    assert result.stdout == ""
    assert "Failed to import main.py" in result.stderr and "not_installed_package_xyz" in result.stderr
    missing = run_python("-m", "shipyard.sdk.loader", "absent.py", cwd=tmp_path)
    assert (missing.returncode, missing.stdout) == (2, "")
    assert "App file not found: absent.py" in missing.stderr
