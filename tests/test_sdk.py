"""The SDK's decorators and objects: what they record, and every misuse they reject at import time."""

from __future__ import annotations

import textwrap
import threading
from pathlib import Path
from typing import Any

import pytest

from shipyard import (
    App,
    Cls,
    Function,
    Image,
    InvalidError,
    Secret,
    asgi_app,
    concurrent,
    fastapi_endpoint,
    web_endpoint,
    web_server,
    wsgi_app,
)
from shipyard.spec import WebConfig, WebKind


def define(source: str) -> dict[str, Any]:
    """Run `source` as the top level of an app file and return its globals."""
    namespace: dict[str, Any] = {"__name__": "user_app"}
    code = "from shipyard import *\nimport shipyard\n" + textwrap.dedent(source)
    exec(compile(code, "user_app.py", "exec"), namespace)
    return namespace


# --- functions ---------------------------------------------------------------------------------------------


def test_function_records_spec_and_keeps_raw_function() -> None:
    ns = define(
        """
        app = App("demo")

        @app.function(gpu="A10G", cpu=2, memory=512, timeout=30, env={"A": "1"}, startup_timeout=12)
        @fastapi_endpoint(method="post", label="sq", docs=True, requires_proxy_auth=True)
        def square(x: int):
            return {"square": x * x}
        """
    )
    fn: Any = ns["square"]
    app = ns["app"]
    assert isinstance(fn, Function)
    assert fn.app is app and fn.tag == "square"
    assert app.registered_functions == {"square": fn}
    assert fn.raw_f(3) == {"square": 9}
    assert fn.local(4) == {"square": 16}
    web = getattr(fn.raw_f, "__shipyard_web__")  # noqa: B009 - set dynamically by the decorator
    assert web == WebConfig(kind=WebKind.FASTAPI_ENDPOINT, method="POST", label="sq", docs=True,
                            requires_proxy_auth=True)
    spec = fn.spec
    assert (spec.tag, spec.qualname, spec.cls_name, spec.method_name) == ("square", "square", None, None)
    assert spec.web == web
    assert spec.resources.gpu == "A10G" and spec.resources.cpu == 2.0 and spec.resources.memory == 512
    assert spec.timeout == 30.0 and spec.startup_timeout == 12.0 and spec.env == {"A": "1"}
    assert spec.is_generator is False


def test_function_defaults() -> None:
    ns = define(
        """
        app = App()

        @app.function()
        def f():
            return 1
        """
    )
    spec = ns["f"].spec
    assert spec.web is None
    assert spec.timeout == 300.0 and spec.startup_timeout is None
    auto = spec.autoscaler
    assert (auto.min_containers, auto.max_containers, auto.buffer_containers) == (0, None, 0)
    assert (auto.scaledown_window, auto.max_inputs, auto.target_inputs) == (60.0, 1, None)
    assert spec.image.steps == [] and spec.secrets == []


def test_new_autoscaler_names() -> None:
    ns = define(
        """
        app = App()

        @app.function(min_containers=1, max_containers=5, buffer_containers=2, scaledown_window=10)
        def f():
            return 1
        """
    )
    auto = ns["f"].spec.autoscaler
    assert (auto.min_containers, auto.max_containers, auto.buffer_containers, auto.scaledown_window) == (
        1, 5, 2, 10.0,
    )


def test_old_autoscaler_names_are_aliases() -> None:
    ns = define(
        """
        app = App()

        @app.function(keep_warm=2, concurrency_limit=4, container_idle_timeout=30, allow_concurrent_inputs=8)
        def f():
            return 1
        """
    )
    auto = ns["f"].spec.autoscaler
    settings = (auto.min_containers, auto.max_containers, auto.scaledown_window, auto.max_inputs)
    assert settings == (2, 4, 30.0, 8)


@pytest.mark.parametrize(
    ("new", "old"),
    [
        ("min_containers=1", "keep_warm=1"),
        ("max_containers=2", "concurrency_limit=2"),
        ("scaledown_window=5", "container_idle_timeout=5"),
    ],
)
def test_old_and_new_names_together_fail(new: str, old: str) -> None:
    with pytest.raises(InvalidError, match="older name"):
        define(f"app = App()\n@app.function({new}, {old})\ndef f(): pass\n")


def test_allow_concurrent_inputs_with_concurrent_fails() -> None:
    with pytest.raises(InvalidError, match="allow_concurrent_inputs"):
        define(
            """
            app = App()

            @app.function(allow_concurrent_inputs=4)
            @concurrent(max_inputs=8)
            def f():
                pass
            """
        )


@pytest.mark.parametrize(
    "kwargs",
    ["timeout=0", "min_containers=-1", "max_containers=0", "min_containers=3, max_containers=2",
     "scaledown_window=0", "cpu=0", "memory=0", "buffer_containers=-1", "gpu=3"],
)
def test_invalid_settings(kwargs: str) -> None:
    with pytest.raises(InvalidError):
        define(f"app = App()\n@app.function({kwargs})\ndef f(): pass\n")


def test_bad_schedule_and_volume_settings_raise() -> None:
    with pytest.raises(InvalidError, match="schedule= takes Period"):
        define("app = App()\n@app.function(schedule=object())\ndef f(): pass\n")
    with pytest.raises(InvalidError, match="Volume objects"):
        define("app = App()\n@app.function(volumes={'/data': object()})\ndef f(): pass\n")


def test_remote_calls_need_a_named_app_and_refuse_web_functions() -> None:
    ns = define("app = App()\n@app.function()\ndef f(x): return x\n")
    fn = ns["f"]
    for call in (fn.remote, fn.spawn, fn.map):
        with pytest.raises(InvalidError, match="App without a name"):
            call([1])
    web = define("app = App('w')\n@app.function()\n@fastapi_endpoint()\ndef g(): return 1\n")["g"]
    with pytest.raises(InvalidError, match=r"web function.*get_web_url"):
        web.remote()
    with pytest.raises(InvalidError, match=r"\.local"):
        fn(1)


def test_generator_function_records_is_generator() -> None:
    ns = define("app = App()\n@app.function()\ndef gen():\n    yield 1\n")
    assert ns["gen"].spec.is_generator is True


def test_app_image_and_secrets_apply_when_function_gives_none() -> None:
    ns = define(
        """
        base = Image.debian_slim().pip_install("boto3")
        other = Image.debian_slim(python_version="3.12").pip_install("flask")
        app = App("a", image=base, secrets=[Secret.from_name("app-secret")])

        @app.function()
        def uses_app_image():
            pass

        @app.function(image=other, secrets=[Secret.from_dict({"K": "v"})])
        def own_image():
            pass
        """
    )
    first = ns["uses_app_image"].spec
    assert [s.packages for s in first.image.steps] == [["boto3"]]
    assert [s.name for s in first.secrets] == ["app-secret"]
    second = ns["own_image"].spec
    assert second.image.python_version == "3.12"
    assert [s.packages for s in second.image.steps] == [["flask"]]
    assert [s.name for s in second.secrets] == ["app-secret", None]
    assert second.secrets[1].values == {"K": "v"}


# --- web decorators ----------------------------------------------------------------------------------------


def test_web_decorators_set_config_on_raw_function() -> None:
    def a() -> None: ...
    def b() -> None: ...
    def c() -> None: ...
    def d() -> None: ...

    assert web_endpoint()(a) is a
    assert a.__shipyard_web__ == WebConfig(kind=WebKind.FASTAPI_ENDPOINT)  # type: ignore[attr-defined]
    asgi_app(label="api", requires_proxy_auth=True)(b)
    assert b.__shipyard_web__ == WebConfig(  # type: ignore[attr-defined]
        kind=WebKind.ASGI_APP, label="api", requires_proxy_auth=True
    )
    wsgi_app()(c)
    assert c.__shipyard_web__.kind == WebKind.WSGI_APP  # type: ignore[attr-defined]
    web_server(8000, startup_timeout=20)(d)
    assert d.__shipyard_web__ == WebConfig(  # type: ignore[attr-defined]
        kind=WebKind.WEB_SERVER, port=8000, startup_timeout=20.0
    )


@pytest.mark.parametrize(
    "decorator", ["fastapi_endpoint()", "web_endpoint()", "asgi_app()", "web_server(8000)"]
)
def test_web_generator_fails(decorator: str) -> None:
    with pytest.raises(InvalidError, match="cannot be generators"):
        define(f"@{decorator}\ndef f():\n    yield 'x'\n")
    with pytest.raises(InvalidError, match="cannot be generators"):
        define(f"@{decorator}\nasync def g():\n    yield 'x'\n")


@pytest.mark.parametrize("decorator", ["asgi_app()", "wsgi_app()", "web_server(8000)"])
def test_app_decorators_reject_parameters(decorator: str) -> None:
    with pytest.raises(InvalidError, match=r"takes parameters \(x\)"):
        define(f"@{decorator}\ndef f(x):\n    pass\n")


def test_app_decorators_accept_defaults_and_self() -> None:
    define(
        """
        @asgi_app()
        def f(x=1):
            pass

        class C:
            @wsgi_app()
            def web(self):
                pass
        """
    )


def test_fastapi_endpoint_accepts_parameters() -> None:
    define("@fastapi_endpoint()\ndef f(x: int, y: str = 'a'):\n    pass\n")


@pytest.mark.parametrize(
    "decorator",
    ["web_endpoint", "fastapi_endpoint", "asgi_app", "wsgi_app", "concurrent", "enter", "exit", "method",
     "app.function", "app.cls"],
)
def test_missing_parentheses(decorator: str) -> None:
    with pytest.raises(InvalidError, match=rf"forget parentheses\? Suggestion: `@{decorator}\(\)`"):
        define(f"app = App()\n@{decorator}\ndef f():\n    pass\n")


def test_web_server_without_port() -> None:
    with pytest.raises(InvalidError, match=r"@web_server\(8000\)"):
        define("@web_server\ndef f():\n    pass\n")


@pytest.mark.parametrize("port", ["0", "70000", "'8000'"])
def test_web_server_invalid_port(port: str) -> None:
    with pytest.raises(InvalidError, match="Invalid port"):
        define(f"@web_server({port})\ndef f():\n    pass\n")


def test_invalid_label_fails() -> None:
    with pytest.raises(InvalidError, match="Invalid label 'My_Label'"):
        fastapi_endpoint(label="My_Label")
    with pytest.raises(InvalidError, match="Invalid label"):
        asgi_app(label="-x")


def test_invalid_http_method() -> None:
    with pytest.raises(InvalidError, match="Invalid HTTP method"):
        fastapi_endpoint(method="FETCH")


def test_two_web_decorators_fail() -> None:
    with pytest.raises(InvalidError, match="already has a web decorator"):
        define("@asgi_app()\n@fastapi_endpoint()\ndef f():\n    pass\n")


@pytest.mark.parametrize("decorator", ["fastapi_endpoint()", "web_endpoint()", "asgi_app()", "wsgi_app()",
                                       "web_server(8000)", "concurrent(max_inputs=2)"])
def test_decorator_above_app_function_fails(decorator: str) -> None:
    with pytest.raises(InvalidError, match=r"Put `@app.function\(\)` first") as info:
        define(f"app = App()\n@{decorator}\n@app.function()\ndef f():\n    pass\n")
    assert "decorators apply bottom-up" in str(info.value)


def test_concurrent_above_app_cls_fails() -> None:
    with pytest.raises(InvalidError, match=r"Put `@app.cls\(\)` first"):
        define("app = App()\n@concurrent(max_inputs=2)\n@app.cls()\nclass C:\n    pass\n")


def test_duplicate_labels_fail() -> None:
    with pytest.raises(InvalidError, match="both use the web label 'same'"):
        define(
            """
            app = App()

            @app.function()
            @fastapi_endpoint(label="same")
            def a():
                pass

            @app.function()
            @asgi_app(label="same")
            def b():
                pass
            """
        )


def test_explicit_label_colliding_with_default_label_fails() -> None:
    with pytest.raises(InvalidError, match="both use the web label 'demo-a'"):
        define(
            """
            app = App("demo")

            @app.function()
            @fastapi_endpoint()
            def a():
                pass

            @app.function()
            @fastapi_endpoint(label="demo-a")
            def b():
                pass
            """
        )


def test_registration_misuse() -> None:
    with pytest.raises(InvalidError, match="top level"):
        define("app = App()\ndef outer():\n    @app.function()\n    def inner(): pass\nouter()\n")
    with pytest.raises(InvalidError, match=r"use `@app.cls\(\)`"):
        define("app = App()\n@app.function()\nclass C:\n    pass\n")
    with pytest.raises(InvalidError, match=r"use `@app.function\(\)`"):
        define("app = App()\n@app.cls()\ndef f():\n    pass\n")
    with pytest.raises(InvalidError, match="only once"):
        define("app = App()\n@app.function()\n@app.function()\ndef f():\n    pass\n")
    with pytest.raises(InvalidError, match="Invalid app name"):
        App("bad name")


# --- @concurrent -------------------------------------------------------------------------------------------


def test_concurrent_between_function_and_web_decorator() -> None:
    ns = define(
        """
        app = App()

        @app.function()
        @concurrent(max_inputs=100, target_inputs=80)
        @asgi_app()
        def api():
            pass

        @app.function()
        @fastapi_endpoint()
        @concurrent(max_inputs=3)
        def other():
            pass
        """
    )
    auto = ns["api"].spec.autoscaler
    assert (auto.max_inputs, auto.target_inputs, auto.effective_target) == (100, 80, 80)
    assert ns["other"].spec.autoscaler.max_inputs == 3


@pytest.mark.parametrize(
    "kwargs",
    [{"max_inputs": 0}, {"max_inputs": 2, "target_inputs": 3}, {"max_inputs": 2, "target_inputs": 0}],
)
def test_concurrent_invalid(kwargs: dict[str, int]) -> None:
    with pytest.raises(InvalidError):
        concurrent(**kwargs)


# --- classes -----------------------------------------------------------------------------------------------


CLASS_APP = """
app = App("llm")

@app.cls(gpu="H100", min_containers=1)
@concurrent(max_inputs=16)
class Model:
    @enter()
    def load(self):
        self.ready = True

    @enter(snap=False)
    def warm(self):
        pass

    @shipyard.exit()
    def close(self):
        pass

    @fastapi_endpoint(method="POST")
    def generate(self, prompt: str):
        return prompt

    @asgi_app(label="model-ui")
    def ui(self):
        return None

    @method()
    def embed(self, text):
        return text

    def helper(self):
        return 1
"""


def test_cls_records_web_methods_and_lifecycle() -> None:
    ns = define(CLASS_APP)
    cls = ns["Model"]
    app = ns["app"]
    assert isinstance(cls, Cls)
    user_cls: Any = cls.user_cls
    assert user_cls.__name__ == "Model"
    assert user_cls.load.__shipyard_enter__ is True
    assert user_cls.warm.__shipyard_enter__ is True
    assert user_cls.close.__shipyard_exit__ is True
    assert user_cls.generate.__shipyard_web__.kind == WebKind.FASTAPI_ENDPOINT
    assert list(app.registered_functions) == ["Model.generate", "Model.ui", "Model.embed"]
    assert app.registered_classes == {"Model": cls}
    generate = app.registered_functions["Model.generate"].spec
    assert (generate.tag, generate.qualname, generate.cls_name, generate.method_name) == (
        "Model.generate", "Model", "Model", "generate",
    )
    assert generate.web is not None and generate.web.method == "POST"
    assert generate.resources.gpu == "H100"
    assert generate.autoscaler.min_containers == 1 and generate.autoscaler.max_inputs == 16
    assert app.registered_functions["Model.embed"].spec.web is None
    assert app.web_labels() == {"llm-model-generate": "Model.generate", "model-ui": "Model.ui"}
    # The instance works locally like the plain class.
    instance = user_cls()
    instance.load()
    assert instance.ready and instance.generate("hi") == "hi"


def test_cls_misuse() -> None:
    with pytest.raises(InvalidError, match="apply it to the class"):
        define("app = App()\n@app.cls()\nclass C:\n    @concurrent(max_inputs=2)\n    @asgi_app()\n"
               "    def web(self): pass\n")
    with pytest.raises(InvalidError, match="must not be wrapped by `@method"):
        define("class C:\n    @method()\n    @fastapi_endpoint()\n    def web(self): pass\n")
    with pytest.raises(InvalidError, match="must not be wrapped by `@method"):
        define("class C:\n    @fastapi_endpoint()\n    @method()\n    def web(self): pass\n")
    with pytest.raises(InvalidError, match="take only self"):
        define("app = App()\n@app.cls()\nclass C:\n    @enter()\n    def load(self, x): pass\n")
    with pytest.raises(InvalidError, match="parametrized classes are not supported"):
        ns = define("app = App()\n@app.cls()\nclass C:\n    pass\n")
        ns["C"](1)


def test_cls_inherits_web_methods() -> None:
    ns = define(
        """
        app = App("x")

        class Base:
            @fastapi_endpoint()
            def ping(self):
                return "pong"

        @app.cls()
        class Child(Base):
            pass
        """
    )
    assert list(ns["app"].registered_functions) == ["Child.ping"]


# --- images ------------------------------------------------------------------------------------------------


def test_image_is_immutable_and_flattens() -> None:
    base = Image.debian_slim(python_version="3.11")
    one = base.pip_install("a", ["b", "c"], extra_options="--no-cache-dir", index_url="https://idx")
    two = one.apt_install(["curl"], "git").run_commands("echo 1", ["echo 2"]).env({"K": "V"})
    assert base.spec.steps == []
    assert len(one.spec.steps) == 1
    steps = two.spec.steps
    assert [s.op for s in steps] == ["pip_install", "apt_install", "run_commands", "env"]
    assert steps[0].packages == ["a", "b", "c"]
    assert steps[0].extra_options == ["--no-cache-dir", "--index-url", "https://idx"]
    assert steps[1].packages == ["curl", "git"]
    assert steps[2].commands == ["echo 1", "echo 2"]
    assert steps[3].env == {"K": "V"}
    assert two.spec.python_version == "3.11"
    assert base.pip_install() is base
    uv = base.uv_pip_install("flask", pre=True).spec.steps[0]
    assert (uv.op, uv.packages, uv.extra_options) == ("uv_pip_install", ["flask"], ["--pre"])


def test_image_hash_depends_on_steps() -> None:
    a = Image.debian_slim().pip_install("flask").spec.content_hash()
    b = Image.debian_slim().pip_install("flask").spec.content_hash()
    c = Image.debian_slim().pip_install("flask==3.0").spec.content_hash()
    assert a == b != c


def test_image_invalid_arguments() -> None:
    with pytest.raises(InvalidError, match="python_version"):
        Image.debian_slim(python_version="2")
    with pytest.raises(InvalidError, match="expected strings"):
        Image.debian_slim().pip_install(3)  # type: ignore[arg-type]
    with pytest.raises(InvalidError, match="dict of strings"):
        Image.debian_slim().env({"K": 1})  # type: ignore[dict-item]
    with pytest.raises(InvalidError, match="top-level module names"):
        Image.debian_slim().add_local_python_source("a.b")


def test_from_registry_is_recorded() -> None:
    spec = Image.from_registry("nvidia/cuda:12.4.0-devel-ubuntu22.04", add_python="3.11").spec
    assert spec.python_version == "3.11"
    steps = [(s.op, s.reference) for s in spec.steps]
    assert steps == [("from_registry", "nvidia/cuda:12.4.0-devel-ubuntu22.04")]


def test_local_file_digest_changes_when_file_changes(tmp_path: Path) -> None:
    data = tmp_path / "data.txt"
    data.write_text("one")
    image = Image.debian_slim().add_local_file(data, "/root/data.txt")
    step = image.spec.steps[0]
    assert step.remote_path == "/root/data.txt"
    assert step.bundle_path == f"__shipyard_steps__/{step.digest}/data.txt"
    first = image.spec.content_hash()
    data.write_text("two")
    assert image.spec.content_hash() != first
    assert image.bundle_files() == [(image.spec.steps[0].bundle_path, data)]


def test_local_dir_and_python_source(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "assets" / "sub").mkdir(parents=True)
    (tmp_path / "assets" / "a.txt").write_text("a")
    (tmp_path / "assets" / "sub" / "b.txt").write_text("b")
    (tmp_path / "assets" / "__pycache__").mkdir()
    (tmp_path / "assets" / "__pycache__" / "x.pyc").write_text("junk")
    (tmp_path / "mylib").mkdir()
    (tmp_path / "mylib" / "__init__.py").write_text("X = 1\n")
    (tmp_path / "mylib" / "notes.txt").write_text("not python")
    (tmp_path / "single.py").write_text("Y = 2\n")
    monkeypatch.chdir(tmp_path)
    monkeypatch.syspath_prepend(str(tmp_path))
    image = (Image.debian_slim().add_local_dir("assets", "/root/assets")
             .add_local_python_source("mylib", "single"))
    dir_step, src_step = image.spec.steps
    assert dir_step.bundle_path == f"__shipyard_steps__/{dir_step.digest}"
    assert src_step.modules == ["mylib", "single"]
    files = sorted(name for name, _ in image.bundle_files())
    assert files == sorted([
        f"{dir_step.bundle_path}/a.txt", f"{dir_step.bundle_path}/sub/b.txt",
        f"{src_step.bundle_path}/mylib/__init__.py", f"{src_step.bundle_path}/single.py",
    ])
    (tmp_path / "assets" / "sub" / "b.txt").write_text("changed")
    assert image.spec.steps[0].digest != dir_step.digest


def test_local_paths_are_read_only_at_spec_time(tmp_path: Path) -> None:
    image = Image.debian_slim().add_local_dir(tmp_path / "missing", "/root/x")
    with pytest.raises(InvalidError, match="is not a directory"):
        _ = image.spec
    with pytest.raises(InvalidError, match="is not a file"):
        _ = Image.debian_slim().add_local_file(tmp_path / "nope.txt", "/root/nope.txt").spec
    with pytest.raises(InvalidError, match="no module named"):
        _ = Image.debian_slim().add_local_python_source("surely_not_a_module_xyz").spec


def test_imports_swallows_import_error_locally() -> None:
    image = Image.debian_slim()
    with image.imports():
        import surely_not_a_module_xyz  # type: ignore[import-not-found]  # noqa: F401
    with pytest.raises(ZeroDivisionError), image.imports():
        _ = 1 / 0


# --- secrets -----------------------------------------------------------------------------------------------


def test_secret_from_name_and_dict() -> None:
    spec = Secret.from_name("my-secret", required_keys=["TOKEN"]).spec
    assert (spec.name, spec.required_keys, spec.values) == ("my-secret", ["TOKEN"], None)
    inline = Secret.from_dict({"A": "1", "B": None}).spec
    assert inline.values == {"A": "1"} and inline.name is None
    with pytest.raises(InvalidError, match="values must be str"):
        Secret.from_dict({"A": 1})  # type: ignore[dict-item]
    with pytest.raises(InvalidError, match="Invalid secret name"):
        Secret.from_name("bad name")
    assert "A" not in repr(Secret.from_dict({"A": "secret-value"}).spec.name or "")
    assert "secret-value" not in repr(Secret.from_dict({"A": "secret-value"}))


def test_secret_from_dotenv(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / ".env").write_text("TOKEN=abc\n# comment\nEMPTY\nQUOTED=\"x y\"\n")
    (tmp_path / "app").mkdir()
    app_file = tmp_path / "app" / "main.py"
    app_file.write_text("")
    (tmp_path / "custom.env").write_text("OTHER=1\n")
    assert Secret.from_dotenv(app_file).spec.values == {"TOKEN": "abc", "QUOTED": "x y"}
    assert Secret.from_dotenv(tmp_path, filename="custom.env").spec.values == {"OTHER": "1"}
    monkeypatch.chdir(tmp_path / "app")
    lazy = Secret.from_dotenv()
    (tmp_path / ".env").write_text("TOKEN=new\n")
    assert lazy.spec.values == {"TOKEN": "new"}
    with pytest.raises(InvalidError, match=r"no missing\.env file"):
        _ = Secret.from_dotenv(filename="missing.env").spec


# --- declarative -------------------------------------------------------------------------------------------


def test_defining_an_app_starts_nothing() -> None:
    before = threading.active_count()
    ns = define(
        """
        app = App("quiet", image=Image.debian_slim().pip_install("flask").add_local_dir("/nonexistent", "/x"))

        @app.function(secrets=[Secret.from_dotenv("/nonexistent/app.py")])
        @wsgi_app()
        def web():
            raise AssertionError("never called at import")
        """
    )
    assert threading.active_count() == before
    assert ns["web"].raw_f.__shipyard_web__.kind == WebKind.WSGI_APP
