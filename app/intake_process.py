"""The intake writer: a child process that stores the jobs and webhook deliveries the service
takes in, many to a transaction, each before its caller is answered.

Why a process: the service answers requests on one event loop, and a writer thread beside it
competes for the interpreter lock. Every system call the loop makes (a log line, a socket write)
hands the lock to the writer, and the loop then waits to get it back: under load the two ended
up taking turns, and one log call took ~45 µs of a job's ~200 µs on the loop (measured). A
writer process runs beside the loop instead: the loop packs the items, and a batch commits
while the loop takes the next requests.

Frames on the child's stdin and stdout are a 4-byte big-endian length and a pickle of a list of
plain values (rows as dicts and tuples, `NewDelivery`s). The first frame the service sends is
the child's configuration (the database URL travels there, never on a command line); then
one frame per turn of the event loop that submitted anything, holding `(seq, op, item)` for
each item. The child reads whatever has arrived, stores it (one transaction per kind of item,
`Writes`), and answers with one frame: `[(seq, ok, value), ...]`, where `value` is the write's
result or, if `ok` is false, the `LedgerError` it raised. An item is answered only after the
commit that stores it.

If the child dies, its unanswered callers get a `StorageError` (the API answers 503, and a
client retrying with the same idempotency key cannot store its job twice); the next item starts
a new child, at most once a second. The child ignores SIGINT and SIGTERM, which a terminal or a
service manager may send to the whole process group: it stops when its stdin closes, after
storing and answering everything it read, so the service decides when intake ends. That also
ends it when the service is killed.

An in-memory SQLite ledger exists only inside the service's process: it is written by
`ThreadWriter`, the same writes on a thread (`app.intake.GroupCommit`).
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import itertools
import os
import pickle
import signal
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, BinaryIO

import structlog

from app.deliveries import DeliveryStore
from app.intake import GroupCommit, IntakeClosedError, IntakeWriter, Outcome
from app.ledger import Ledger, LedgerError, StorageError

log = structlog.get_logger("app.intake_process")


_HEADER = 4
RESPAWN_SECONDS = 1.0
"""The shortest time between two starts of the child: a child that cannot start (a database it
cannot open) fails each batch instead of being started for every request."""
STOP_TIMEOUT_SECONDS = 30.0
START_DELAY_SECONDS = 1.0
"""How long after the service starts the child is started, unless an item comes first: the
service's own start-up does not share the CPU with the child's."""


@dataclass(frozen=True)
class Writes:
    """The writes the intake writer performs, by the name a frame gives."""

    ledger: Ledger
    deliveries: DeliveryStore

    def ops(self) -> dict[str, Callable[[list[Any]], Sequence[Any]]]:
        return {"jobs": self.ledger.store_prepared, "deliveries": self.deliveries.record_many}

    def write(self, batch: Sequence[tuple[str, Any]]) -> list[Outcome]:
        """Store `batch` of (op, item): each op's items in one transaction, in order. A failed
        transaction fails its own items only."""
        ops = self.ops()
        outcomes: list[Outcome | None] = [None] * len(batch)
        by_op: dict[str, list[int]] = {}
        for index, (op, _item) in enumerate(batch):
            by_op.setdefault(op, []).append(index)
        for op, indexes in by_op.items():
            write = ops.get(op)
            results: Sequence[Any] | LedgerError
            if write is None:
                results = LedgerError(f"the intake writer has no write {op!r}")
            else:
                try:
                    results = write([batch[i][1] for i in indexes])
                except LedgerError as exc:
                    results = exc
                except Exception as exc:  # a bug fails its batch, never the writer
                    log.exception("intake_write_failed", op=op, items=len(indexes))
                    results = StorageError(f"the intake writer failed: {exc}")
            for n, index in enumerate(indexes):
                if isinstance(results, LedgerError):
                    outcomes[index] = (False, results)
                else:
                    outcomes[index] = (True, results[n])
        return [outcome for outcome in outcomes if outcome is not None]


def intake_writer(ledger: Ledger, *, log_format: str = "auto") -> IntakeWriter:
    """The intake writer for `ledger` (not started): a child process, or a thread for an
    in-memory database, which no other process can open."""
    if ledger.in_memory:
        return ThreadWriter(Writes(ledger, DeliveryStore(ledger)))
    return ProcessWriter(ledger.url, log_format=log_format)


class ThreadWriter:
    """The writes on a thread in the service's own process (`GroupCommit`)."""

    def __init__(self, writes: Writes) -> None:
        self._commit: GroupCommit[tuple[str, Any], Outcome] = GroupCommit(
            writes.write, name="intake-writer"
        )

    def start(self) -> None:
        self._commit.start()

    async def stop(self) -> None:
        await self._commit.stop()

    async def store(self, op: str, item: object) -> Any:
        return _unpack(await self._commit.store((op, item)))


class ProcessWriter:
    """The service's side of the intake writer process; see the module docstring.

    Args:
        url: the ledger's SQLAlchemy URL (sent on the child's stdin, never on its command line).
        log_format: the child's log format (`app.logs.configure_logging`).
    """

    def __init__(self, url: str, *, log_format: str = "auto") -> None:
        self.url = url
        self.log_format = log_format
        self._seq = itertools.count()
        self._pending: dict[int, asyncio.Future[Outcome]] = {}
        self._outbox: list[tuple[int, str, object]] = []
        self._flushing = False
        self._proc: asyncio.subprocess.Process | None = None
        self._reader: asyncio.Task[None] | None = None
        self._starting: asyncio.Task[None] | None = None
        self._start_timer: asyncio.TimerHandle | None = None
        self._last_start = -RESPAWN_SECONDS
        self._closed = False
        self.exit_code: int | None = None
        """How the last child ended (None while the first runs)."""

    @property
    def pid(self) -> int | None:
        """The child's process id, while it runs."""
        return None if self._proc is None else self._proc.pid

    def start(self) -> None:
        """Start the child soon (`START_DELAY_SECONDS`), or with the first item."""
        loop = asyncio.get_running_loop()
        self._start_timer = loop.call_later(START_DELAY_SECONDS, self._start_idle)

    def _start_idle(self) -> None:
        if self._proc is None and self._starting is None and not self._closed:
            self._spawn()

    async def stop(self) -> None:
        """Take no more items; the child stores and answers those sent, then ends."""
        self._closed = True
        if self._start_timer is not None:
            self._start_timer.cancel()
        if self._starting is not None:
            await self._starting
        proc = self._proc
        if proc is None:
            return
        self._flush()
        assert proc.stdin is not None
        proc.stdin.close()
        if not self._pending:
            # Everything sent has been answered, so committed: nothing is lost by not waiting
            # for a child that may still be importing its modules.
            proc.kill()
        try:
            async with asyncio.timeout(STOP_TIMEOUT_SECONDS):
                await proc.wait()
                if self._reader is not None:
                    await self._reader
        except TimeoutError:
            log.error("intake_writer_stop_timeout", pid=proc.pid)
            proc.kill()
            await proc.wait()

    async def store(self, op: str, item: object) -> Any:
        if self._closed:
            raise IntakeClosedError("the service is stopping; it takes no new work")
        if self._proc is None and self._starting is None and not self._spawn():
            raise StorageError("the intake writer is restarting; try again later")
        loop = asyncio.get_running_loop()
        seq = next(self._seq)
        answer: asyncio.Future[Outcome] = loop.create_future()
        self._pending[seq] = answer
        self._outbox.append((seq, op, item))
        if not self._flushing:
            self._flushing = True
            loop.call_soon(self._flush)
        # A caller cancelled meanwhile (a client gone) cancels only its answer: its item is
        # still stored with the batch, as an item whose insert had begun always was.
        return _unpack(await answer)

    def _spawn(self) -> bool:
        """Start the child, unless the last start was too recent; whether it is starting."""
        if time.monotonic() - self._last_start < RESPAWN_SECONDS:
            return False
        self._last_start = time.monotonic()
        self._starting = asyncio.get_running_loop().create_task(self._start_child())
        return True

    async def _start_child(self) -> None:
        try:
            proc = await asyncio.create_subprocess_exec(
                sys.executable,
                "-m",
                "app.intake_process",
                stdin=asyncio.subprocess.PIPE,
                stdout=asyncio.subprocess.PIPE,
            )
        except OSError as exc:
            log.error("intake_writer_start_failed", error=str(exc))
            self._fail_pending(StorageError(f"cannot start the intake writer: {exc}"))
            return
        finally:
            self._starting = None
        assert proc.stdin is not None
        _widen(proc.stdin)
        proc.stdin.write(_frame([{"url": self.url, "log_format": self.log_format}]))
        self._proc = proc
        self._reader = asyncio.get_running_loop().create_task(self._read_answers(proc))
        log.info("intake_writer_started", pid=proc.pid)
        self._flush()

    def _flush(self) -> None:
        self._flushing = False
        proc = self._proc
        if proc is None or not self._outbox:
            return  # sent once the child has started
        assert proc.stdin is not None
        # One frame for everything submitted since the last flush: one pickle, whose memo
        # writes the column names shared by the items once.
        items, self._outbox = self._outbox, []
        try:
            data = _frame(items)
        except Exception as exc:  # an item that cannot be sent fails, with its turn's items
            log.exception("intake_frame_failed", items=len(items))
            error = StorageError(f"cannot hand the items to the intake writer: {exc}")
            for seq, _op, _item in items:
                answer = self._pending.pop(seq, None)
                if answer is not None and not answer.done():
                    answer.set_result((False, error))
            return
        if proc.stdin.is_closing():
            return  # the child is gone: `_read_answers` fails what it had not answered
        proc.stdin.write(data)

    async def _read_answers(self, proc: asyncio.subprocess.Process) -> None:
        assert proc.stdout is not None
        try:
            while True:
                head = await proc.stdout.readexactly(_HEADER)
                body = await proc.stdout.readexactly(int.from_bytes(head, "big"))
                for seq, ok, value in pickle.loads(body):  # noqa: S301 (our own child)
                    answer = self._pending.pop(seq, None)
                    if answer is not None and not answer.done():
                        answer.set_result((ok, value))
        except asyncio.IncompleteReadError:
            pass  # the child ended
        code = self.exit_code = await proc.wait()
        self._proc = None
        if not self._closed:
            log.error("intake_writer_exited", pid=proc.pid, exit_code=code)
        self._fail_pending(StorageError(f"the intake writer stopped (exit code {code})"))

    def _fail_pending(self, error: StorageError) -> None:
        pending, self._pending = self._pending, {}
        self._outbox = []
        for answer in pending.values():
            if not answer.done():
                answer.set_result((False, error))


PIPE_BYTES = 1 << 20
"""The pipe to the child holds this much. Linux's default, 64 KiB, is a turn's worth of items
at most: one comment of GitHub's longest (65,536 characters) fills it, and a write that does not
fit is finished over later turns of the loop, a system call each."""


def _widen(stdin: asyncio.StreamWriter) -> None:
    pipe = stdin.transport.get_extra_info("pipe")
    setter = getattr(fcntl, "F_SETPIPE_SZ", None)  # Linux only
    if pipe is None or setter is None:
        return
    with contextlib.suppress(OSError):  # over /proc/sys/fs/pipe-max-size: the default stays
        fcntl.fcntl(pipe.fileno(), setter, PIPE_BYTES)


def _unpack(outcome: Outcome) -> Any:
    ok, value = outcome
    if not ok:
        raise value
    return value


def _frame(value: object) -> bytes:
    data = pickle.dumps(value, protocol=pickle.HIGHEST_PROTOCOL)
    return len(data).to_bytes(_HEADER, "big") + data


class _Frames:
    """Reads frames from a file descriptor: waits for one, then takes every other one that has
    arrived whole, so what queued up during a commit makes the next batch."""

    def __init__(self, fd: int) -> None:
        self.fd = fd
        self.buffer = bytearray()
        self.ready: list[Any] = []

    def batch(self) -> list[Any] | None:
        """The items read, or None at the end of input."""
        ended = False
        while not ended and (not self.ready or self.buffer):
            ended = not self._read()
        items, self.ready = self.ready, []
        return items or None

    def _read(self) -> bool:
        """Read what has arrived; False at the end of input (a partial frame there is an item
        never sent whole)."""
        chunk = os.read(self.fd, 1 << 20)
        if not chunk:
            return False
        self.buffer += chunk
        self.ready.extend(self._complete())
        return True

    def _complete(self) -> list[Any]:
        frames = []
        at = 0
        with memoryview(self.buffer) as view:
            while len(view) - at >= _HEADER:
                size = int.from_bytes(view[at : at + _HEADER], "big")
                end = at + _HEADER + size
                if len(view) < end:
                    break
                frames.extend(pickle.loads(view[at + _HEADER : end]))  # noqa: S301 (our parent)
                at = end
        del self.buffer[:at]
        return frames


def _serve(frames: _Frames, answers: BinaryIO, writes: Writes) -> None:
    while (batch := frames.batch()) is not None:
        outcomes = writes.write([(op, item) for _seq, op, item in batch])
        seqs = [seq for seq, _op, _item in batch]
        reply = [(seq, *_picklable(o)) for seq, o in zip(seqs, outcomes, strict=True)]
        answers.write(_frame(reply))
        answers.flush()


def _picklable(outcome: Outcome) -> Outcome:
    ok, value = outcome
    if ok:
        return outcome
    try:
        pickle.dumps(value)
    except Exception:
        return False, StorageError(str(value))
    return outcome


def main() -> int:
    """The child: `python -m app.intake_process`, started by `ProcessWriter`."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    # Answers go out on the original stdout; anything else printed goes to stderr.
    answers = os.fdopen(os.dup(1), "wb")
    os.dup2(2, 1)
    frames = _Frames(0)
    first = frames.batch()
    if first is None:
        return 0
    config, frames.ready = first[0], first[1:]
    from app.logs import configure_logging

    configure_logging(config["log_format"])
    structlog.contextvars.bind_contextvars(process="intake-writer")
    ledger = Ledger(config["url"])
    try:
        _serve(frames, answers, Writes(ledger, DeliveryStore(ledger)))
    finally:
        ledger.close()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
