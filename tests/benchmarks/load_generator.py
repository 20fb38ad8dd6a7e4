"""A closed-loop HTTP load generator, run as its own process so it never shares the server's
event loop: `python -m tests.benchmarks.load_generator URL --token T --concurrency 32 ...`.

Each worker holds one keep-alive connection and sends the next `POST` as soon as the previous
answer is in. By default each request is a job for `POST /api/jobs` with its own idempotency
key; with `--requests-file` the requests are taken, in order, from a file of prebuilt ones (one
JSON object per line: `headers` and `body`, sent byte for byte, so a signed webhook delivery
stays signed), all encoded before the first request is sent. It prints one JSON object: the
measured requests' throughput and latency percentiles, the status codes seen, and the CPU time
the generator itself used (a ratio near 1 CPU-second per second means the client, not the
server, was the limit).

HTTP/1.1 is spoken directly over asyncio streams rather than through httpx: on a small machine
httpx's per-request cost would cap the bare baseline near the client's own limit and flatter
every ratio taken against it.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import resource
import sys
import time
from collections import Counter
from collections.abc import Coroutine, Sequence
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

from tests.benchmarks.report import percentile


@dataclass(kw_only=True)
class Plan:
    host: str
    port: int
    path: str
    token: str
    workflow: str
    key_prefix: str
    concurrency: int
    requests: int
    warmup: int
    prebuilt: list[bytes] | None = None
    """Whole requests (head and body) by index, instead of jobs built on the fly."""


@dataclass(kw_only=True)
class Tally:
    """What one phase saw; `next_index` hands out request numbers to the workers."""

    count: int
    first_index: int
    next_index: int = 0
    latencies: list[float] = field(default_factory=list)
    statuses: Counter[int] = field(default_factory=Counter)

    def take(self) -> int | None:
        if self.next_index >= self.count:
            return None
        self.next_index += 1
        return self.first_index + self.next_index - 1


class Connection:
    """One keep-alive HTTP/1.1 connection that sends a POST and reads the whole answer."""

    def __init__(self, plan: Plan) -> None:
        self.plan = plan
        self.reader: asyncio.StreamReader | None = None
        self.writer: asyncio.StreamWriter | None = None

    async def post(self, body: bytes) -> int:
        return await self.send(self._head(len(body)) + body)

    async def send(self, request: bytes) -> int:
        """Send one whole request and read its answer; returns the status."""
        if self.writer is None:
            self.reader, self.writer = await asyncio.open_connection(self.plan.host, self.plan.port)
        assert self.reader is not None
        self.writer.write(request)
        head = await self.reader.readuntil(b"\r\n\r\n")
        status, length, close = _parse_head(head)
        await self.reader.readexactly(length)
        if close:
            await self.close()
        return status

    def _head(self, length: int) -> bytes:
        plan = self.plan
        return (
            f"POST {plan.path} HTTP/1.1\r\n"
            f"host: {plan.host}:{plan.port}\r\n"
            f"authorization: Bearer {plan.token}\r\n"
            "content-type: application/json\r\n"
            f"content-length: {length}\r\n\r\n"
        ).encode("ascii")

    async def close(self) -> None:
        if self.writer is not None:
            self.writer.close()
            self.writer = self.reader = None


def _parse_head(head: bytes) -> tuple[int, int, bool]:
    """Status, content length and whether the server closes the connection."""
    lines = head.decode("latin-1").split("\r\n")
    status = int(lines[0].split(" ", 2)[1])
    length, close = 0, False
    for line in lines[1:]:
        name, _, value = line.partition(":")
        name = name.strip().lower()
        if name == "content-length":
            length = int(value)
        elif name == "connection":
            close = value.strip().lower() == "close"
    return status, length, close


def _body(plan: Plan, index: int) -> bytes:
    job = {
        "workflow": plan.workflow,
        "instruction": "Say hello.",
        "idempotency_key": f"{plan.key_prefix}-{index}",
    }
    return json.dumps(job).encode()


def prebuilt_request(plan: Plan, headers: dict[str, str], body: bytes) -> bytes:
    """One whole `POST` to the plan's URL with these headers (and the length of `body`)."""
    lines = [f"POST {plan.path} HTTP/1.1", f"host: {plan.host}:{plan.port}"]
    lines += [f"{name}: {value}" for name, value in headers.items()]
    lines.append(f"content-length: {len(body)}")
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + body


def read_requests(plan: Plan, path: str) -> list[bytes]:
    """The prebuilt requests of a `--requests-file`, encoded for `plan`."""
    requests = []
    with open(path, encoding="utf-8") as lines:
        for line in lines:
            item = json.loads(line)
            requests.append(prebuilt_request(plan, item["headers"], item["body"].encode()))
    return requests


async def _worker(plan: Plan, tally: Tally, connection: Connection) -> None:
    while (index := tally.take()) is not None:
        body = b"" if plan.prebuilt is not None else _body(plan, index)
        started = time.perf_counter()
        try:
            if plan.prebuilt is not None:
                status = await connection.send(plan.prebuilt[index])
            else:
                status = await connection.post(body)
        except (OSError, asyncio.IncompleteReadError, ValueError):
            status = 0  # counted as an error; the next request opens a fresh connection
            await connection.close()
        tally.latencies.append(time.perf_counter() - started)
        tally.statuses[status] += 1


async def _phase(plan: Plan, tally: Tally, connections: Sequence[Connection]) -> float:
    started = time.perf_counter()
    await asyncio.gather(*(_worker(plan, tally, c) for c in connections))
    return time.perf_counter() - started


def _cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


async def measure(plan: Plan) -> dict[str, Any]:
    connections = [Connection(plan) for _ in range(plan.concurrency)]
    try:
        await _phase(plan, Tally(count=plan.warmup, first_index=0), connections)
        tally = Tally(count=plan.requests, first_index=plan.warmup)
        cpu_before = _cpu_seconds()
        seconds = await _phase(plan, tally, connections)
        cpu = _cpu_seconds() - cpu_before
    finally:
        for connection in connections:
            await connection.close()
    return {
        "requests": plan.requests,
        "seconds": seconds,
        "rps": plan.requests / seconds,
        "p50_ms": percentile(tally.latencies, 0.50) * 1000,
        "p99_ms": percentile(tally.latencies, 0.99) * 1000,
        "max_ms": max(tally.latencies) * 1000,
        "statuses": {str(k): v for k, v in sorted(tally.statuses.items())},
        "client_cpu_per_s": cpu / seconds,
    }


def _run(main: Coroutine[Any, Any, dict[str, Any]]) -> dict[str, Any]:
    try:
        import uvloop  # the cheapest client loop available, as the servers use it too
    except ImportError:
        return asyncio.run(main)
    return uvloop.run(main)


def _plan(argv: Sequence[str] | None) -> Plan:
    parser = argparse.ArgumentParser(prog="python -m tests.benchmarks.load_generator")
    parser.add_argument("url", help="e.g. http://127.0.0.1:8000/api/jobs")
    parser.add_argument("--token", default="")
    parser.add_argument("--workflow", default="bench-intake")
    parser.add_argument("--key-prefix", default="bench")
    parser.add_argument("--concurrency", type=int, default=32)
    parser.add_argument("--requests", type=int, default=3000)
    parser.add_argument("--warmup", type=int, default=200)
    parser.add_argument(
        "--requests-file",
        metavar="PATH",
        help="prebuilt requests, one JSON object a line (headers, body): warm-up first",
    )
    args = parser.parse_args(argv)
    url = urlsplit(args.url)
    if url.scheme != "http" or url.hostname is None or url.port is None:
        parser.error(f"url {args.url!r} must be http://HOST:PORT/PATH")
    plan = Plan(
        host=url.hostname,
        port=url.port,
        path=url.path or "/",
        token=args.token,
        workflow=args.workflow,
        key_prefix=args.key_prefix,
        concurrency=args.concurrency,
        requests=args.requests,
        warmup=args.warmup,
    )
    if args.requests_file is not None:
        plan.prebuilt = read_requests(plan, args.requests_file)
        if len(plan.prebuilt) < plan.warmup + plan.requests:
            parser.error(
                f"{args.requests_file!r} holds {len(plan.prebuilt)} requests, "
                f"fewer than warm-up and measured ({plan.warmup + plan.requests})"
            )
    return plan


def main(argv: Sequence[str] | None = None) -> int:
    print(json.dumps(_run(measure(_plan(argv)))))
    return 0


if __name__ == "__main__":
    sys.exit(main())
