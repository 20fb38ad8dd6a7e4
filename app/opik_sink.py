"""The Opik sink: the one module that imports the Opik SDK.

Runs hand it finished spans and traces (`loops.tracing`); `record` only appends to a bounded
queue, so a run never waits on Opik. One worker thread imports the SDK (about 2 s, so never on
start-up's path), builds the client, redacts every string and passes each item to the SDK,
whose own background threads batch the writes and, while Opik is down or refusing, park them
and replay them once it answers again. `close` flushes within `OPIK_DEFAULT_FLUSH_TIMEOUT`
plus a little, whatever state Opik is in, and never raises.

`OpikRegress` is the other way round, for `loopwright regress`: it searches traces and spans,
and writes regression datasets and experiments.

    OpikUnavailable     the SDK could not be imported or Opik refused a regress request; the
                        message names the operation
"""

from __future__ import annotations

import datetime as dt
import os
import queue
import threading
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Final

import structlog

from app.opik_settings import OpikSettings
from app.tracing import Redactor
from loops.tracing import SpanRecord, TraceError, TraceRecord

if TYPE_CHECKING:
    import opik

log = structlog.get_logger("app.opik_sink")

_STOP: Final = object()
_SPAN_TYPES: Final = {"llm": "llm", "tool": "tool", "turn": "general", "check": "general"}
CLOSE_SLACK_SECONDS = 3.0
"""What `close` may take beyond the flush timeout: the SDK's last hand-offs and thread joins."""


class OpikSink:
    """A `TraceSink` that sends to Opik from its own thread.

    Args:
        max_queued: items held while the worker is behind; beyond that new items are dropped
            (counted and logged), so a stuck SDK cannot grow the service's memory.
    """

    def __init__(
        self, config: OpikSettings, redactor: Redactor, *, max_queued: int = 50_000
    ) -> None:
        self.config = config
        self.redactor = redactor
        self.max_queued = max_queued
        self.dropped = 0
        self.failures = 0
        self._queue: queue.SimpleQueue[object] = queue.SimpleQueue()
        self._thread = threading.Thread(target=self._work, name="opik-sink", daemon=True)
        self._closed = False

    def start(self) -> None:
        self._thread.start()

    def record(self, item: SpanRecord | TraceRecord) -> None:
        if self._closed:
            return
        if self._queue.qsize() >= self.max_queued:
            self.dropped += 1
            if self.dropped == 1 or self.dropped % 1000 == 0:
                log.warning("trace_items_dropped", dropped=self.dropped, queued=self.max_queued)
            return
        self._queue.put(item)

    def close(self) -> bool:
        """Send what is queued and stop; returns whether everything was handed over in time."""
        if self._closed:
            return not self._thread.is_alive()
        self._closed = True
        self._queue.put(_STOP)
        if self._thread.ident is None:
            return True
        self._thread.join(self.config.default_flush_timeout + CLOSE_SLACK_SECONDS)
        done = not self._thread.is_alive()
        log.info(
            "tracing_stopped" if done else "tracing_stop_timed_out",
            dropped=self.dropped,
            failures=self.failures,
        )
        return done

    def _work(self) -> None:
        client = self._connect()
        while True:
            item = self._queue.get()
            if item is _STOP:
                break
            if client is None:
                continue
            try:
                self._send(client, item)
            except Exception as exc:  # one bad item must not stop the others
                self.failures += 1
                log.warning("trace_item_failed", error=f"{type(exc).__name__}: {exc}"[:300])
        if client is not None:
            self._end(client)

    def _connect(self) -> opik.Opik | None:
        # The SDK reads these when it is imported and when the client is built. Its error
        # reports and usage analytics go to third parties: off unless the operator turns them on.
        os.environ.setdefault("OPIK_DEFAULT_FLUSH_TIMEOUT", str(self.config.default_flush_timeout))
        os.environ.setdefault("OPIK_SENTRY_ENABLE", "false")
        os.environ.setdefault("OPIK_ANALYTICS_ENABLE", "false")
        try:
            import opik

            api_key = self.config.api_key
            return opik.Opik(
                project_name=self.config.project_name,
                # Empty variables (a deployment template's defaults) count as unset.
                workspace=self.config.workspace or None,
                host=self.config.url_override or None,
                api_key=(api_key.get_secret_value() or None) if api_key is not None else None,
                _show_misconfiguration_message=False,
            )
        except Exception:
            log.exception("tracing_unavailable")
            return None

    def _end(self, client: opik.Opik) -> None:
        try:
            result = client.end(timeout=self.config.default_flush_timeout)
        except Exception:
            log.exception("tracing_flush_failed")
            return
        if result is not None and not result.success:
            log.warning("tracing_flush_incomplete", remaining=result.remaining_queue_size)

    def _send(self, client: opik.Opik, item: object) -> None:
        if isinstance(item, SpanRecord):
            self._span(client, item)
        elif isinstance(item, TraceRecord):
            self._trace(client, item)

    def _span(self, client: opik.Opik, span: SpanRecord) -> None:
        clean = self.redactor.value
        usage = span.usage
        client.span(
            trace_id=span.trace_id,
            id=span.span_id,
            parent_span_id=span.parent_id,
            name=clean(span.name),
            type=_SPAN_TYPES[span.kind],  # type: ignore[arg-type]  # a SpanType literal
            start_time=_time(span.start),
            end_time=_time(span.end),
            input=clean(span.input),
            output=clean(span.output),
            metadata=clean({"kind": span.kind, **span.metadata}),
            tags=[span.kind],
            usage=(
                {
                    "prompt_tokens": usage.input_tokens,
                    "completion_tokens": usage.output_tokens,
                    "total_tokens": usage.total_tokens,
                }
                if usage is not None
                else None
            ),
            model=span.model,
            provider=span.provider,
            total_cost=span.cost_usd,
            error_info=_error(span.error, clean),
        )

    def _trace(self, client: opik.Opik, trace: TraceRecord) -> None:
        clean = self.redactor.value
        scores: list[Any] = [
            {"name": s.name, "value": s.value, "reason": clean(s.reason)} for s in trace.scores
        ]
        client.trace(
            id=trace.trace_id,
            name=clean(trace.name),
            start_time=_time(trace.start),
            end_time=_time(trace.end),
            input=clean(trace.input),
            output=clean(trace.output),
            metadata=clean(trace.metadata),
            tags=list(trace.tags),
            thread_id=trace.thread_id,
            error_info=_error(trace.error, clean),
            feedback_scores=scores or None,
        )


def _time(unix: float) -> dt.datetime:
    return dt.datetime.fromtimestamp(unix, tz=dt.UTC)


def _error(error: TraceError | None, clean: Any) -> Any:
    if error is None:
        return None
    message = clean(error.message)
    return {"exception_type": error.type, "message": message, "traceback": message}


# --- Reading traces back, and regression datasets and experiments (`loopwright regress`) ---
#
# Everything below runs in the foreground of a `regress` command: searches page through the
# SDK's streaming search, dataset items and experiment items are written through the SDK and
# flushed before returning. Results are plain dicts in Opik's public REST shapes, so callers
# never see SDK types.

Json = dict[str, Any]


class OpikUnavailable(Exception):
    """Opik could not answer a regress command's request."""


@dataclass(frozen=True, kw_only=True)
class DatasetItem:
    id: str
    trace_id: str
    input: Json
    expected_output: Json


@dataclass(frozen=True, kw_only=True)
class ExperimentItem:
    dataset_item_id: str
    trace_id: str


class OpikRegress:
    """The Opik side of `regress export` and `regress run --live`."""

    def __init__(self, config: OpikSettings) -> None:
        self.config = config
        self._client: opik.Opik | None = None

    def close(self) -> None:
        if self._client is not None:
            self._client.end(timeout=self.config.default_flush_timeout)

    def search_traces(self, filters: Sequence[str], *, max_results: int) -> list[Json]:
        """Traces of the project matching every filter (Opik query language, joined by AND)."""
        expression = " AND ".join(f for f in filters if f) or None
        found = self._call(
            "search traces",
            lambda c: c.search_traces(
                project_name=self.config.project_name,
                filter_string=expression,
                max_results=max_results,
                truncate=False,
            ),
        )
        return [t.model_dump(mode="json", exclude_none=True) for t in found]

    def spans(self, trace_id: str) -> list[Json]:
        found = self._call(
            "search spans",
            lambda c: c.search_spans(
                project_name=self.config.project_name,
                trace_id=trace_id,
                max_results=10_000,
                truncate=False,
            ),
        )
        return [s.model_dump(mode="json", exclude_none=True) for s in found]

    def add_to_dataset(self, name: str, items: Sequence[DatasetItem]) -> None:
        """Create the dataset if needed and insert the items (an item id already there is
        updated in place, so exporting a case twice does not duplicate it)."""

        def insert(client: opik.Opik) -> None:
            dataset = client.get_or_create_dataset(
                name,
                description="Loopwright regression cases: failing runs exported by "
                "`loopwright regress export`",
                project_name=self.config.project_name,
            )
            rows = [
                {
                    "id": i.id,
                    "trace_id": i.trace_id,
                    "source": "trace",
                    "input": i.input,
                    "expected_output": i.expected_output,
                }
                for i in items
            ]
            dataset.insert(rows, num_threads=1, deduplication=False)

        self._call("add dataset items", insert)

    def log_experiment(
        self, *, dataset: str, name: str, config: Json, items: Sequence[ExperimentItem]
    ) -> str:
        """An experiment on `dataset` linking each case's item to the trace of its new run
        (whose feedback scores, the checker's, are the experiment's metric); returns its id."""

        def log(client: opik.Opik) -> str:
            experiment = client.create_experiment(
                dataset_name=dataset,
                name=name,
                experiment_config=config,
                project_name=self.config.project_name,
            )
            from opik.api_objects.experiment.experiment_item import ExperimentItemReferences

            experiment.insert(
                [
                    ExperimentItemReferences(
                        dataset_item_id=i.dataset_item_id,
                        trace_id=i.trace_id,
                        project_name=self.config.project_name,
                    )
                    for i in items
                ]
            )
            client.flush(timeout=self.config.default_flush_timeout)
            return str(experiment.id)

        return str(self._call("log experiment", log))

    def _call(self, operation: str, action: Any) -> Any:
        client = self._connect()
        try:
            return action(client)
        except Exception as exc:
            raise OpikUnavailable(
                f"Opik at {self.config.url_override or 'Opik Cloud'!r} failed to {operation}: "
                f"{type(exc).__name__}: {str(exc)[:300]}"
            ) from exc

    def _connect(self) -> opik.Opik:
        if self._client is not None:
            return self._client
        # As in the sink: bounded flushes, and no third-party reports unless turned on.
        os.environ.setdefault("OPIK_DEFAULT_FLUSH_TIMEOUT", str(self.config.default_flush_timeout))
        os.environ.setdefault("OPIK_SENTRY_ENABLE", "false")
        os.environ.setdefault("OPIK_ANALYTICS_ENABLE", "false")
        try:
            import opik

            api_key = self.config.api_key
            self._client = opik.Opik(
                project_name=self.config.project_name,
                workspace=self.config.workspace,
                host=self.config.url_override,
                api_key=api_key.get_secret_value() if api_key is not None else None,
                _show_misconfiguration_message=False,
            )
        except Exception as exc:
            raise OpikUnavailable(f"cannot start the Opik client: {exc}") from exc
        return self._client
