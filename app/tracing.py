"""Tracing runs to Opik: which runs get a tracer, their trace ids and links, and redaction.

Tracing is on when Opik is configured (`OPIK_URL_OVERRIDE` or `OPIK_API_KEY`). A run's trace id
is derived from the run (its id and creation time), so its link is known before anything is
sent and a resumed run keeps its trace. The sink (`app.opik_sink`) is the only module that
imports the Opik SDK, and it does so in its own thread, so start-up and the CLI stay fast.
"""

from __future__ import annotations

import base64
import os
import re
import urllib.parse
from collections import OrderedDict
from collections.abc import Callable, Iterable, Mapping
from typing import Any

from pydantic import BaseModel, SecretStr

from app.ledger import JobRow, RunRow
from app.opik_settings import OpikSettings
from loops.budget import PriceBook
from loops.clock import Clock
from loops.processes import secret_name
from loops.tracing import RunTracer, TraceFacts, TraceSink, uuid7

OPIK_CLOUD_API = "https://www.comet.com/opik/api"
REDACTED = "[REDACTED]"
_MIN_SECRET_LENGTH = 6
_TOKEN_PATTERNS = re.compile(
    "|".join(
        (
            r"-----BEGIN [A-Z ]*PRIVATE KEY-----[\s\S]*?-----END [A-Z ]*PRIVATE KEY-----",
            r"\bgh[pousr]_[A-Za-z0-9]{20,}",
            r"\bgithub_pat_[A-Za-z0-9_]{20,}",
            r"\bxox[abposr]-[A-Za-z0-9-]{10,}",
            r"\bsk-[A-Za-z0-9_-]{20,}",
            r"\bAKIA[0-9A-Z]{16}\b",
            r"\beyJ[A-Za-z0-9_-]{10,}\.[A-Za-z0-9_-]{10,}\.[A-Za-z0-9_-]{10,}",
            r"(?<=[Bb]earer )[A-Za-z0-9._~+/=-]{16,}",
        )
    )
)


class Redactor:
    """Replaces known secret values and token-looking strings in traced data."""

    def __init__(self, secrets: Iterable[str]) -> None:
        kept = {s for s in secrets if len(s) >= _MIN_SECRET_LENGTH}
        self.secrets = sorted(kept, key=len, reverse=True)  # a secret containing another first

    def text(self, value: str) -> str:
        for secret in self.secrets:
            if secret in value:
                value = value.replace(secret, REDACTED)
        return _TOKEN_PATTERNS.sub(REDACTED, value)

    def value(self, value: Any) -> Any:
        """`value` with every string in it redacted (dicts, lists and tuples walked)."""
        if isinstance(value, str):
            return self.text(value)
        if isinstance(value, Mapping):
            return {k: self.value(v) for k, v in value.items()}
        if isinstance(value, list | tuple):
            return [self.value(v) for v in value]
        return value


def secret_values(settings: BaseModel, environ: Mapping[str, str] | None = None) -> list[str]:
    """Every `SecretStr` in the settings, and the values of credential-named variables."""
    env = os.environ if environ is None else environ
    found = [value for name, value in env.items() if secret_name(name)]
    found += _secrets_in(settings)
    return found


def _secrets_in(model: BaseModel) -> list[str]:
    found: list[str] = []
    for name in type(model).model_fields:
        value = getattr(model, name)
        if isinstance(value, SecretStr):
            found.append(value.get_secret_value())
        elif isinstance(value, BaseModel):
            found += _secrets_in(value)
    return found


def opik_state(config: OpikSettings) -> tuple[bool, str]:
    """Whether runs are traced, and why (not)."""
    if config.url_override:
        return True, f"OPIK_URL_OVERRIDE is set; project {config.project_name!r}"
    if config.api_key is not None and config.api_key.get_secret_value().strip():
        return True, f"OPIK_API_KEY is set; project {config.project_name!r}"
    return False, "neither OPIK_URL_OVERRIDE nor OPIK_API_KEY is set"


def api_url(config: OpikSettings) -> str:
    return (config.url_override or OPIK_CLOUD_API).rstrip("/")


def trace_id(run: RunRow) -> str:
    """The run's trace id: a UUIDv7 at the run's creation time, seeded by its id."""
    return uuid7(run.created_at, seed=f"loopwright-run:{run.id}")


def trace_link(config: OpikSettings, trace: str) -> str:
    """The Opik UI's link to a trace, through the redirect that finds its project (the link
    the Opik SDK prints)."""
    base = api_url(config)
    encoded = base64.b64encode(base.encode()).decode()
    path = urllib.parse.quote(
        f"v1/session/redirect/projects/?trace_id={trace}&path={encoded}", safe=":/&?="
    )
    return f"{base}/{path}"


def start_tracing(
    config: OpikSettings, *, capture_content: bool, secrets: Iterable[str]
) -> Tracing:
    """Tracing as configured: an Opik sink with its worker started, or off.

    Args:
        capture_content: whether prompts, completions and tool data are traced.
        secrets: values never to send (the settings' secrets, credential variables).
    """
    enabled, _ = opik_state(config)
    if not enabled:
        return Tracing(config, None, capture_content=capture_content)
    from app.opik_sink import OpikSink

    sink = OpikSink(config, Redactor(secrets))
    sink.start()
    return Tracing(config, sink, capture_content=capture_content, close=sink.close)


class Tracing:
    """The service's (or a CLI run's) tracing: tracers for runs, links to their traces.

    Args:
        sink: where spans and traces go; None when tracing is off.
    """

    def __init__(
        self,
        config: OpikSettings,
        sink: TraceSink | None,
        *,
        capture_content: bool = True,
        close: Callable[[], bool] | None = None,
    ) -> None:
        self.config = config
        self.capture_content = capture_content
        self.sink = sink
        self._close = close
        self._ids: OrderedDict[str, str] = OrderedDict()

    def close(self) -> bool:
        """Flush and stop the sink (bounded by `OPIK_DEFAULT_FLUSH_TIMEOUT` plus seconds)."""
        return self._close() if self._close is not None else True

    @property
    def enabled(self) -> bool:
        return self.sink is not None

    def url_for(self, run: RunRow) -> str | None:
        if self.sink is None:
            return None
        return trace_link(self.config, self._remember(run))

    def link(self, run: RunRow) -> str | None:
        """The run's trace link whenever Opik is configured (for runs traced elsewhere, too)."""
        if not opik_state(self.config)[0]:
            return None
        return trace_link(self.config, trace_id(run))

    def trace_url(self, run_id: str) -> str | None:
        """The link for a run this process has traced (reports know the run only by id)."""
        found = self._ids.get(run_id)
        return None if found is None or self.sink is None else trace_link(self.config, found)

    def tracer(
        self, run: RunRow, job: JobRow, *, clock: Clock, prices: PriceBook, model: str
    ) -> RunTracer | None:
        if self.sink is None:
            return None
        facts = TraceFacts(
            trace_id=self._remember(run),
            name=run.workflow,
            started_at=run.started_at or clock.now(),
            input=self._job_input(job, model),
            metadata=_metadata(run, job),
            tags=(f"workflow:{run.workflow}", f"source:{job.source}"),
            thread_id=job.concurrency_key if job.concurrency_key else None,
        )
        return RunTracer(
            sink=self.sink,
            facts=facts,
            clock=clock,
            prices=prices,
            capture_content=self.capture_content,
        )

    def _remember(self, run: RunRow) -> str:
        found = self._ids.get(run.id)
        if found is None:
            found = self._ids[run.id] = trace_id(run)
            while len(self._ids) > 10_000:
                self._ids.popitem(last=False)
        return found

    def _job_input(self, job: JobRow, model: str) -> dict[str, Any]:
        out: dict[str, Any] = {"workflow": job.workflow, "source": job.source, "model": model}
        if self.capture_content and job.instruction:
            out["instruction"] = job.instruction
        for name in ("repo", "pr", "requested_by", "workdir"):
            value = getattr(job, name)
            if value is not None:
                out[name] = value
        return out


def _metadata(run: RunRow, job: JobRow) -> dict[str, Any]:
    trigger: dict[str, Any] = {"source": job.source, **dict(job.reply)}
    if job.requested_by:
        trigger["requested_by"] = job.requested_by
    return {
        "job_id": job.id,
        "run_id": run.id,
        "repo": job.repo,
        "pr": job.pr,
        "trigger": trigger,
        "attempt": run.attempts,
    }
