"""Reading traces back from Opik and writing regression datasets and experiments.

The second module allowed to import the Opik SDK (beside `app.opik_sink`, which only writes
traces from its worker thread). Everything here runs in the foreground of a `regress`
command: searches page through the SDK's streaming search, dataset items and experiment items
are written through the SDK and flushed before returning. Results are plain dicts in Opik's
public REST shapes, so callers never see SDK types.

    OpikUnavailable     the SDK could not be imported or Opik refused a request; the message
                        names the operation
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from app.opik_settings import OpikSettings

if TYPE_CHECKING:
    import opik

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
