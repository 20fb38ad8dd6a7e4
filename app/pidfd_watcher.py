"""Waiting for tool and check processes through pidfds, as Python 3.12's asyncio does.

Python 3.11's default child watcher waits for each child process in a thread of its own and
starts that thread on the event loop. With hundreds of runs checking at once, those thread
starts were most of the loop's lag (measured: p99 75-110 ms at 500 runs, 11-33 ms with pidfds).
A pidfd is a file descriptor that becomes readable when its process exits, so the loop waits
for children the way it waits for sockets. Unlike 3.11's own `PidfdChildWatcher`, this one is
bound to no loop: each child is watched by the loop that started it.
"""

from __future__ import annotations

import asyncio
import os
import sys
import warnings
from collections.abc import Callable
from types import TracebackType
from typing import Any

import structlog

log = structlog.get_logger("app.pidfd_watcher")


def install_pidfd_watcher() -> bool:
    """Use pidfds for asyncio subprocesses in this process; whether they are in use.

    A no-op on Python 3.12 and later (already the default) and where pidfds are missing (old
    kernels, some sandboxes), which keep the default watcher.
    """
    if sys.version_info >= (3, 12) or not hasattr(os, "pidfd_open"):
        return sys.version_info >= (3, 12)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        if isinstance(asyncio.get_child_watcher(), PidfdWatcher):
            return True
        try:
            os.close(os.pidfd_open(os.getpid()))
        except OSError:
            return False
        asyncio.set_child_watcher(PidfdWatcher())
    return True


class PidfdWatcher(asyncio.AbstractChildWatcher):
    def add_child_handler(  # type: ignore[override]  # typeshed's signature is variadic-generic
        self, pid: int, callback: Callable[..., object], *args: Any
    ) -> None:
        loop = asyncio.get_running_loop()
        pidfd = os.pidfd_open(pid)
        loop.add_reader(pidfd, self._reap, loop, pid, pidfd, callback, args)

    def _reap(
        self,
        loop: asyncio.AbstractEventLoop,
        pid: int,
        pidfd: int,
        callback: Callable[..., object],
        args: tuple[Any, ...],
    ) -> None:
        loop.remove_reader(pidfd)
        os.close(pidfd)
        try:
            _, status = os.waitpid(pid, 0)
        except ChildProcessError:
            returncode = 255  # reaped elsewhere: its status is gone
            log.warning("child_status_lost", pid=pid)
        else:
            returncode = os.waitstatus_to_exitcode(status)
        callback(pid, returncode, *args)

    def remove_child_handler(self, pid: int) -> bool:
        return False  # asyncio never calls it: a child is watched until it exits

    def attach_loop(self, loop: asyncio.AbstractEventLoop | None) -> None:
        pass  # each child is watched by the loop running when it is added

    def close(self) -> None:
        pass

    def is_active(self) -> bool:
        return True

    def __enter__(self) -> PidfdWatcher:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        pass
