"""Prometheus metrics: runs by status, turns, tokens, cost, queue depth, executor slots, and
request counters and latency histograms for every route (webhooks and API alike).

The request metrics come from a plain ASGI middleware (`MetricsMiddleware`): Starlette's
`BaseHTTPMiddleware` would run every request in a task group of its own.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator

from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from loops.events import Event, RunFinished, TurnFinished

Snapshot = Callable[[], tuple[dict[str, int], int, int]]
"""Returns (runs by status, executor slots in use, executor slots)."""


class Metrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        r = self.registry
        self.turns = Counter("loopwright_turns", "Maker turns completed", registry=r)
        self.tokens = Counter("loopwright_tokens", "Model tokens used", ["direction"], registry=r)
        self.cost = Counter("loopwright_cost_usd", "Dollars spent on model calls", registry=r)
        self.finished = Counter(
            "loopwright_runs_finished", "Runs ended, by status", ["status"], registry=r
        )
        self.requests = Counter(
            "loopwright_http_requests", "HTTP requests", ["route", "method", "status"], registry=r
        )
        self.latency = Histogram(
            "loopwright_http_request_seconds",
            "HTTP request latency",
            ["route", "method"],
            buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5),
            registry=r,
        )
        self._request_children: dict[tuple[str, str, int], tuple[Histogram, Counter]] = {}

    def watch_state(self, snapshot: Snapshot) -> None:
        self.registry.register(_StateCollector(snapshot))

    def render(self) -> bytes:
        return generate_latest(self.registry)

    def listener(self) -> Callable[[Event], None]:
        """Counts a run's turns, tokens and cost as they happen."""
        seen = {"input": 0, "output": 0, "cost": 0.0}

        def on_event(event: Event) -> None:
            if isinstance(event, TurnFinished):
                self.turns.inc()
                self._usage(
                    seen, event.usage.input_tokens, event.usage.output_tokens, event.usage.cost_usd
                )
            elif isinstance(event, RunFinished):
                usage = event.outcome.usage
                self._usage(seen, usage.input_tokens, usage.output_tokens, usage.cost_usd)
                self.finished.labels(event.outcome.status).inc()

        return on_event

    def _usage(self, seen: dict[str, float], inp: int, out: int, cost: float) -> None:
        # Events carry run totals; count only what is new since the last event.
        self.tokens.labels("input").inc(max(0, inp - seen["input"]))
        self.tokens.labels("output").inc(max(0, out - seen["output"]))
        self.cost.inc(max(0.0, cost - seen["cost"]))
        seen.update(input=inp, output=out, cost=cost)

    def observe(self, route: str, method: str, status: int, seconds: float) -> None:
        key = (route, method, status)
        children = self._request_children.get(key)
        if children is None:
            # `labels()` takes a lock and builds the key on every call; the label sets are few
            # (routes are templates), so each pair of children is looked up once.
            children = (
                self.latency.labels(route, method),
                self.requests.labels(route, method, str(status)),
            )
            self._request_children[key] = children
        children[0].observe(seconds)
        children[1].inc()


class MetricsMiddleware:
    """Counts and times every HTTP request, labelled by route template, method and status."""

    def __init__(self, app: ASGIApp, *, metrics: Metrics) -> None:
        self.app = app
        self.metrics = metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        status = 500  # unless a response starts: an exception becomes a 500 further out

        async def send_counted(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, send_counted)
        finally:
            elapsed = time.perf_counter() - started
            self.metrics.observe(_route_name(scope), scope["method"], status, elapsed)


def _route_name(scope: Scope) -> str:
    # The route template, not the raw path, keeps label cardinality bounded. The router puts
    # the route it dispatched to into the (shared) scope; nothing matched leaves none.
    route = scope.get("route")
    return "unmatched" if route is None else str(getattr(route, "path", "other"))


class _StateCollector(Collector):
    def __init__(self, snapshot: Snapshot) -> None:
        self.snapshot = snapshot

    def collect(self) -> Iterator[GaugeMetricFamily]:
        counts, in_use, slots = self.snapshot()
        runs = GaugeMetricFamily(
            "loopwright_runs", "Runs in the ledger, by status", labels=["status"]
        )
        for status, n in sorted(counts.items()):
            runs.add_metric([status], n)
        yield runs
        yield GaugeMetricFamily(
            "loopwright_queue_depth", "Queued runs", value=counts.get("queued", 0)
        )
        yield GaugeMetricFamily(
            "loopwright_executor_slots_in_use", "Runs executing here", value=in_use
        )
        yield GaugeMetricFamily("loopwright_executor_slots", "Executor slots", value=slots)
