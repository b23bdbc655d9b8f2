"""`Dict` through a real server: shared by two containers and by a client process."""

from __future__ import annotations

from pathlib import Path

from tests.conftest import Platform
from tests.test_calls import client_ok

APP = '''
import shipyard

app = shipyard.App("dicts")
shared = shipyard.Dict.from_name("shared-dict", create_if_missing=True)


@app.function()
def writer(key, value):
    shared[key] = value
    return len(shared)


@app.function()
def reader(key):
    return shared.get(key, "missing"), key in shared
'''


def test_dict_shared_by_two_containers_and_a_client(platform: Platform, app_file) -> None:  # type: ignore[no-untyped-def]
    platform.deploy(app_file(APP))
    out = client_ok(platform, """
        import shipyard
        writer = shipyard.Function.from_name("dicts", "writer")
        reader = shipyard.Function.from_name("dicts", "reader")
        print(writer.remote(("a", 1), {"nested": [1, 2]}))
        print(reader.remote(("a", 1)))
        print(reader.remote("nope"))
        d = shipyard.Dict.from_name("shared-dict")
        print(d[("a", 1)])
        d["b"] = 2
        print(d.put("b", 3, skip_if_exists=True), d["b"], len(d), "b" in d, d.contains("zzz"))
        print(set(d.keys()) == {("a", 1), "b"}, 2 in list(d.values()), dict(d.items())["b"],
              list(d) == list(d.keys()))
        print(d.pop("b"), len(d))
        try:
            d["b"]
        except KeyError as exc:
            print("KeyError", exc)
        print(reader.remote(("a", 1)))
        d.clear()
        print(len(d), list(d.items()))
    """)
    assert out.splitlines() == [
        "1",
        "({'nested': [1, 2]}, True)",
        "('missing', False)",
        "{'nested': [1, 2]}",
        "False 2 2 True False",
        "True True 2 True",
        "2 1",
        "KeyError 'b'",
        "({'nested': [1, 2]}, True)",
        "0 []",
    ]


def test_missing_dict_without_create_is_not_found(platform: Platform, tmp_path: Path) -> None:
    out = client_ok(platform, """
        import shipyard
        try:
            shipyard.Dict.from_name("never-created").get("k")
        except shipyard.NotFoundError as exc:
            print(exc)
        try:
            shipyard.Dict.from_name("never-created", create_if_missing=True)[lambda: 1] = object.__new__(
                type("Local", (), {"__reduce__": lambda self: (_ for _ in ()).throw(TypeError("no"))}))
        except shipyard.InvalidError as exc:
            print(exc)
    """)
    lines = out.splitlines()
    assert lines[0].startswith("Dict 'never-created' not found")
    assert lines[1].startswith("The Dict value cannot be pickled")
