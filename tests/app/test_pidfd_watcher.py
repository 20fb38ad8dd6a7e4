"""The pidfd child watcher: exit codes arrive, on whichever loop started the process."""

from __future__ import annotations

import asyncio
import sys
import threading
import warnings

import pytest

from app.pidfd_watcher import PidfdWatcher, install_pidfd_watcher

pytestmark = pytest.mark.skipif(sys.version_info >= (3, 12), reason="3.12 watches with pidfds")


async def exit_codes() -> list[int | None]:
    ok = await asyncio.create_subprocess_exec("true")
    failed = await asyncio.create_subprocess_shell("exit 3")
    slept = await asyncio.create_subprocess_exec("sleep", "30")
    slept.kill()
    return [await proc.wait() for proc in (ok, failed, slept)]


def test_processes_end_with_their_exit_codes_on_any_loop_in_any_thread() -> None:
    assert install_pidfd_watcher()
    assert install_pidfd_watcher()  # once is enough; again changes nothing
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        assert isinstance(asyncio.get_child_watcher(), PidfdWatcher)

    assert asyncio.run(exit_codes()) == [0, 3, -9]
    assert asyncio.run(exit_codes()) == [0, 3, -9]  # a second loop, after the first closed

    in_thread: list[list[int | None]] = []
    thread = threading.Thread(target=lambda: in_thread.append(asyncio.run(exit_codes())))
    thread.start()
    thread.join(timeout=30)
    assert in_thread == [[0, 3, -9]]
