"""The container sandbox: bubblewrap namespaces plus slirp4netns user-mode networking.

Each container gets its own user, network and PID namespaces. Its own network namespace lets two user
servers bind the same port and keeps them off the platform's ports; slirp4netns gives it outbound
access without the host's loopback. Its own PID namespace means every process it starts dies with
its main process. The filesystem is shared, so the proxy still reaches the container's Unix socket.

Process tree: server → bwrap (outer, reports the exit status) → bwrap init (PID 1 inside, the
`child-pid` of `--info-fd`) → the container's main process (PID 2 inside). PID 1 ignores SIGTERM,
so a graceful stop signals the main process, found through the init's children.
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import json
import os
import shutil
import signal
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from ..exceptions import ContainerError
from ..spec import Mount
from ._logs import open_pipe_reader

REQUIRED_TOOLS = ("bwrap", "slirp4netns")
INSTALL_HINT = "install bubblewrap and slirp4netns (for example `apt-get install bubblewrap slirp4netns`)"
_SLIRP_DNS = "10.0.2.3"
_SETUP_TIMEOUT = 15.0


class StartupFailure(Exception):
    """A container did not come up; the runtime adds its last stderr lines once it is reaped."""


def missing_tools() -> list[str]:
    return [tool for tool in REQUIRED_TOOLS if shutil.which(tool) is None]


def resolv_conf_override(run_dir: Path, host: Path = Path("/etc/resolv.conf")) -> tuple[Path, str] | None:
    """A resolv.conf for the namespace when the host's resolver sits on the host's loopback.

    Returns (file to bind, path to bind it over). Inside the namespace the host's loopback is
    unreachable, so queries must go to slirp4netns's built-in DNS forwarder instead.
    """
    try:
        text = host.read_text()
    except OSError:
        return None
    servers = [line.split()[1] for line in text.splitlines() if line.startswith("nameserver ") and
               len(line.split()) > 1]
    if not servers or not all(_is_loopback(server) for server in servers):
        return None
    override = run_dir / "resolv.conf"
    override.write_text(f"nameserver {_SLIRP_DNS}\n")
    return override, os.path.realpath(host)


def _is_loopback(address: str) -> bool:
    try:
        return ipaddress.ip_address(address.split("%")[0]).is_loopback
    except ValueError:
        return False


def bwrap_argv(
    command: Sequence[str],
    *,
    workdir: str,
    mounts: Sequence[Mount],
    resolv_conf: tuple[Path, str] | None,
    info_fd: int,
    block_fd: int,
) -> list[str]:
    argv = [
        "bwrap",
        "--dev-bind", "/", "/",
        "--unshare-user", "--uid", "0", "--gid", "0",
        "--unshare-net",
        "--unshare-pid", "--proc", "/proc",
        "--die-with-parent",
        "--info-fd", str(info_fd),
        # The command waits until slirp4netns has configured tap0, so it starts with a network.
        "--block-fd", str(block_fd),
    ]
    for mount in mounts:
        argv += ["--ro-bind" if mount.read_only else "--bind", mount.source, mount.target]
    if resolv_conf is not None:
        argv += ["--ro-bind", str(resolv_conf[0]), resolv_conf[1]]
    argv += ["--chdir", workdir, "--", *command]
    return argv


@dataclass(eq=False)
class Sandbox:
    """The host-side handles of one sandboxed container (besides the bwrap process itself)."""

    init_pidfd: int
    init_pid: int
    slirp: asyncio.subprocess.Process | None = None
    slirp_exit_fd: int | None = None
    """Write end of slirp4netns's exit pipe: closing it makes slirp4netns exit."""
    main_pidfd: int | None = field(default=None)

    def signal_main(self, sig: signal.Signals) -> bool:
        """Send `sig` to the container's main process; False when it is not (or no longer) there."""
        if self.main_pidfd is None:
            pid = _main_pid(self.init_pid)
            if pid is None:
                return False
            try:
                self.main_pidfd = os.pidfd_open(pid)
            except ProcessLookupError:
                return False
        try:
            signal.pidfd_send_signal(self.main_pidfd, sig)
        except ProcessLookupError:
            return False
        return True

    def kill_all(self) -> None:
        """SIGKILL the namespace's init: the kernel then kills every process in the namespace."""
        with contextlib.suppress(ProcessLookupError):
            signal.pidfd_send_signal(self.init_pidfd, signal.SIGKILL)

    async def close(self) -> None:
        self.kill_all()
        if self.slirp_exit_fd is not None:
            os.close(self.slirp_exit_fd)
            self.slirp_exit_fd = None
        if self.slirp is not None:
            try:
                await asyncio.wait_for(self.slirp.wait(), 5.0)
            except TimeoutError:
                with contextlib.suppress(ProcessLookupError):
                    self.slirp.kill()
                await self.slirp.wait()
        for fd in (self.init_pidfd, self.main_pidfd):
            if fd is not None:
                os.close(fd)
        self.main_pidfd = None


def _main_pid(init_pid: int) -> int | None:
    """Host PID of the container's main process: the init's child that is PID 2 in the namespace.

    Orphans inside the namespace are reparented to the init too, hence the NSpid check.
    """
    try:
        children = Path(f"/proc/{init_pid}/task/{init_pid}/children").read_text().split()
    except OSError:
        return None
    for child in children:
        try:
            status = Path(f"/proc/{child}/status").read_text()
        except OSError:
            continue
        for line in status.splitlines():
            if line.startswith("NSpid:") and line.split()[-1] == "2":
                return int(child)
    return None


async def setup_network(info_fd: int, block_fd: int, log_path: Path) -> Sandbox:
    """Wait for bwrap's namespaces, attach slirp4netns, then let the container's command run.

    Consumes `info_fd` (read end of `--info-fd`); writes to `block_fd` (write end of `--block-fd`)
    but leaves closing it to the caller, after the container is known to be up or killed.
    """
    try:
        info = await asyncio.wait_for(_read_json(info_fd), _SETUP_TIMEOUT)
    except TimeoutError:
        info = None
    init_pid = info.get("child-pid") if info is not None else None
    if not isinstance(init_pid, int):
        raise StartupFailure("bwrap did not create the container's namespaces")
    try:
        init_pidfd = os.pidfd_open(init_pid)
    except ProcessLookupError:
        raise StartupFailure("bwrap exited while setting up the container's namespaces") from None
    sandbox = Sandbox(init_pidfd=init_pidfd, init_pid=init_pid)
    try:
        await _wait_for_loopback(init_pid)
        await _start_slirp(sandbox, log_path)
        try:
            os.write(block_fd, b"1")
        except BrokenPipeError:
            raise StartupFailure("bwrap exited while setting up the container's namespaces") from None
    except BaseException:
        await sandbox.close()
        raise
    return sandbox


async def _wait_for_loopback(init_pid: int) -> None:
    """Wait until bwrap has brought up `lo` in the new namespace.

    slirp4netns configuring the namespace while bwrap still sets up `lo` makes bwrap fail now and
    then ("loopback: Failed RTM_NEWADDR"); `lo` is up once its local route exists.
    """
    deadline = asyncio.get_running_loop().time() + _SETUP_TIMEOUT
    while asyncio.get_running_loop().time() < deadline:
        if _loopback_up(init_pid):
            return
        await asyncio.sleep(0.002)
    raise StartupFailure("bwrap did not bring up the container's loopback interface")


def _loopback_up(init_pid: int) -> bool:
    try:
        return "127.0.0.1" in Path(f"/proc/{init_pid}/net/fib_trie").read_text()
    except OSError:
        raise StartupFailure("bwrap exited while setting up the container's namespaces") from None


async def _start_slirp(sandbox: Sandbox, log_path: Path) -> None:
    ready_r, ready_w = os.pipe()
    exit_r, exit_w = os.pipe()
    sandbox.slirp_exit_fd = exit_w
    log = await asyncio.to_thread(log_path.open, "ab")
    try:
        sandbox.slirp = await asyncio.create_subprocess_exec(
            "slirp4netns", "--configure", "--mtu=65520", "--disable-host-loopback",
            "--ready-fd", str(ready_w), "--exit-fd", str(exit_r),
            str(sandbox.init_pid), "tap0",
            stdin=asyncio.subprocess.DEVNULL, stdout=log, stderr=log,
            pass_fds=(ready_w, exit_r), start_new_session=True,
        )
    except OSError as exc:
        os.close(ready_r)
        raise ContainerError(f"cannot start slirp4netns: {exc}; {INSTALL_HINT}") from exc
    finally:
        os.close(ready_w)
        os.close(exit_r)
        log.close()
    try:
        ready = await asyncio.wait_for(_read_all(ready_r), _SETUP_TIMEOUT)
    except TimeoutError:
        ready = b""
    if ready.strip() != b"1":
        tail = await asyncio.to_thread(_tail, log_path)
        raise StartupFailure(f"slirp4netns could not set up the network ({tail})")


def _tail(path: Path, lines: int = 10) -> str:
    try:
        return " | ".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return "(no output)"


async def _read_all(fd: int) -> bytes:
    reader, transport = await open_pipe_reader(fd)
    try:
        return await reader.read()
    finally:
        transport.close()


async def _read_json(fd: int) -> dict[str, object] | None:
    """Read one JSON object; bwrap keeps the info fd open, so parse as the bytes arrive."""
    reader, transport = await open_pipe_reader(fd)
    data = b""
    try:
        while chunk := await reader.read(4096):
            data += chunk
            with contextlib.suppress(ValueError):
                value = json.loads(data)
                return value if isinstance(value, dict) else None
        return None
    finally:
        transport.close()
