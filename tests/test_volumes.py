"""Volumes through a real server: mounted into containers, shared after commit(), managed with the CLI."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from shipyard import App, InvalidError, Volume
from tests.conftest import Platform
from tests.test_calls import client_ok


def _app(mount: Path, volume: str, create: bool = False) -> str:
    return f'''
import os
import shipyard

app = shipyard.App("volumes-{volume}")
vol = shipyard.Volume.from_name({volume!r}, create_if_missing={create})
MOUNT = {str(mount)!r}


@app.function(volumes={{MOUNT: vol}})
def write(text):
    os.makedirs(MOUNT + "/sub", exist_ok=True)
    with open(MOUNT + "/sub/msg.txt", "w") as f:
        f.write(text)
    vol.commit()


@app.function(volumes={{MOUNT: vol}})
def read():
    vol.reload()
    with open(MOUNT + "/sub/msg.txt") as f:
        return f.read()
'''


def test_volume_written_by_one_function_read_by_another(platform: Platform, app_file,  # type: ignore[no-untyped-def]
                                                        tmp_path: Path) -> None:
    mount = tmp_path / "mnt"
    mount.mkdir()
    platform.cli("volume", "create", "vol-data")
    platform.deploy(app_file(_app(mount, "vol-data")))
    out = client_ok(platform, """
        import shipyard
        shipyard.Function.from_name("volumes-vol-data", "write").remote("hello volume")
        print(shipyard.Function.from_name("volumes-vol-data", "read").remote())
    """)
    assert out.strip() == "hello volume"
    # The write went to the volume through the bind mount, not to the folder on the host.
    assert list(mount.iterdir()) == []
    assert (platform.home / "volumes" / "main" / "vol-data" / "sub" / "msg.txt").read_text() == "hello volume"

    listing = json.loads(platform.cli("volume", "ls", "vol-data", "/sub", "--json").stdout)
    assert [(e["path"], e["type"], e["size"]) for e in listing] == [("sub/msg.txt", "file", 12)]
    assert platform.cli("volume", "get", "vol-data", "/sub/msg.txt").stdout == "hello volume"
    local = tmp_path / "up.txt"
    local.write_text("uploaded")
    platform.cli("volume", "put", "vol-data", str(local), "/up/")
    assert platform.cli("volume", "get", "vol-data", "up/up.txt").stdout == "uploaded"
    platform.cli("volume", "rm", "vol-data", "/up/up.txt")
    assert "up.txt" not in platform.cli("volume", "ls", "vol-data", "/up").stdout
    names = [v["name"] for v in json.loads(platform.cli("volume", "list", "--json").stdout)]
    assert "vol-data" in names
    platform.cli("app", "stop", "volumes-vol-data")
    platform.cli("volume", "delete", "vol-data", "--yes")
    assert "vol-data" not in platform.cli("volume", "list").stdout


def test_missing_volume_fails_the_deploy_and_create_if_missing_creates_it(
        platform: Platform, app_file, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    result = platform.cli("deploy", str(app_file(_app(tmp_path, "vol-missing"))), check=False)
    assert result.returncode == 1
    assert "Volume 'vol-missing' not found" in result.stderr and "shipyard volume create" in result.stderr
    platform.deploy(app_file(_app(tmp_path, "vol-auto", create=True)))
    assert (platform.home / "volumes" / "main" / "vol-auto").is_dir()
    platform.cli("app", "stop", "volumes-vol-auto")


@pytest.mark.parametrize(("path", "message"), [
    ("data", "canonical, absolute path"),
    ("/data/../etc", "canonical, absolute path"),
    ("/", "root directory"),
    ("/root", "'/root'"),
    ("/tmp", "'/tmp'"),
])
def test_mount_path_rules(path: str, message: str) -> None:
    app = App("rules")
    with pytest.raises(InvalidError, match=message):
        app.function(volumes={path: Volume.from_name("v")})


def test_volumes_must_be_volume_objects_and_bad_cli_input(platform: Platform) -> None:
    with pytest.raises(InvalidError, match="Volume objects"):
        App("rules").function(volumes={"/data": "v"})
    with pytest.raises(InvalidError, match="Invalid volume name"):
        Volume.from_name("bad name!")
    missing = platform.cli("volume", "ls", "no-such-volume", check=False)
    assert missing.returncode == 1 and "Volume 'no-such-volume' not found" in missing.stderr
    platform.cli("volume", "create", "vol-escape")
    escape = platform.cli("volume", "get", "vol-escape", "../../admin_token", check=False)
    assert escape.returncode == 1
    assert "admin" not in escape.stdout


def test_volumes_without_the_sandbox_name_what_to_install(tmp_path: Path) -> None:
    from shipyard.server._volumes import VolumeStore
    from shipyard.spec import AppSpec, FunctionSpec

    store = VolumeStore(tmp_path, mounts_supported=False)
    store.create("main", "v", exist_ok=False)
    app = AppSpec(name="a", entry_file="a.py", module_name="a",
                  functions=[FunctionSpec(tag="f", qualname="f", volumes={"/data": "v"})])
    with pytest.raises(InvalidError, match="bubblewrap"):
        store.prepare(app, "main")
