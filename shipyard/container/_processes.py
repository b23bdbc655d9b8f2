"""Stops the processes the user's code started (a `web_server`'s server, an engine, helpers)."""

from __future__ import annotations

import contextlib
import os
import signal
import time


def terminate_descendants(grace: float) -> None:
    """SIGTERM to every descendant (and to our process group when we lead it), SIGKILL after `grace`.

    Call only once serving is over: it ignores SIGTERM in this process from then on.
    """
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    pids = _descendants(os.getpid())
    leader = os.getpgrp() == os.getpid()
    if not pids and not leader:
        return
    if leader:
        # Reaches also the processes whose parent died and that were re-parented away from us.
        with contextlib.suppress(OSError):
            os.killpg(os.getpgrp(), signal.SIGTERM)
    for pid in pids:
        with contextlib.suppress(OSError):
            os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + grace
    while True:
        _reap()
        alive = [pid for pid in pids if _alive(pid)]
        if not alive or time.monotonic() >= deadline:
            break
        time.sleep(0.02)
    for pid in alive:
        with contextlib.suppress(OSError):
            os.kill(pid, signal.SIGKILL)
    _reap()


def child_processes() -> list[int]:
    """Live processes descending from this one."""
    return [pid for pid in _descendants(os.getpid()) if _alive(pid)]


def _descendants(root: int) -> list[int]:
    children: dict[int, list[int]] = {}
    try:
        entries = os.listdir("/proc")
    except OSError:
        return []
    for entry in entries:
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat", "rb") as f:
                stat = f.read()
        except OSError:
            continue
        # The command name may contain spaces and parentheses: the fields start after the last ")".
        fields = stat[stat.rfind(b")") + 2 :].split()
        children.setdefault(int(fields[1]), []).append(int(entry))
    found: list[int] = []
    stack = [root]
    while stack:
        for child in children.get(stack.pop(), []):
            found.append(child)
            stack.append(child)
    return found


def _alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            stat = f.read()
    except OSError:
        return False
    state = stat[stat.rfind(b")") + 2 : stat.rfind(b")") + 3]
    return state not in (b"Z", b"X")


def _reap() -> None:
    with contextlib.suppress(ChildProcessError):
        while os.waitpid(-1, os.WNOHANG)[0] != 0:
            pass
