"""A child process whose exit is seen the moment it happens.

asyncio's own `Process.wait()` (Python 3.11) returns only once the stdout/stderr pipes close, which
never happens while a grandchild still holds them, and the grandchildren are killed only after the
main process is seen to exit. So the exit is watched here through a pidfd instead.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import subprocess
from collections.abc import Sequence
from typing import IO


class ChildProcess:
    def __init__(self, popen: subprocess.Popen[bytes]) -> None:
        self._popen = popen
        self.pid = popen.pid
        self._loop = asyncio.get_running_loop()
        self._exited: asyncio.Future[int] = self._loop.create_future()
        self._pidfd = os.pidfd_open(popen.pid)
        self._loop.add_reader(self._pidfd, self._check)
        self._check()

    @classmethod
    def spawn(
        cls, argv: Sequence[str], *, env: dict[str, str], cwd: str, pass_fds: Sequence[int]
    ) -> ChildProcess:
        """Start `argv` in its own session with its output on pipes (raises OSError)."""
        popen = subprocess.Popen(
            argv,
            env=env,
            cwd=cwd,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            pass_fds=tuple(pass_fds),
            # Its own session: a Ctrl-C at the server's terminal does not reach containers, and the
            # whole process group can be killed once the main process is gone.
            start_new_session=True,
        )
        return cls(popen)

    @property
    def stdout(self) -> IO[bytes]:
        assert self._popen.stdout is not None
        return self._popen.stdout

    @property
    def stderr(self) -> IO[bytes]:
        assert self._popen.stderr is not None
        return self._popen.stderr

    @property
    def returncode(self) -> int | None:
        return self._popen.returncode

    def _check(self) -> None:
        returncode = self._popen.poll()
        if returncode is None or self._exited.done():
            return
        self._loop.remove_reader(self._pidfd)
        os.close(self._pidfd)
        self._exited.set_result(returncode)

    async def wait(self) -> int:
        return await asyncio.shield(self._exited)

    def send_signal(self, sig: signal.Signals) -> bool:
        """Signal the process unless it has exited; False when it has."""
        if self._popen.returncode is not None:
            return False
        # The pid cannot be reused before `poll()` reaps it, and only `_check` polls.
        with contextlib.suppress(ProcessLookupError):
            os.kill(self.pid, sig)
            return True
        return False
