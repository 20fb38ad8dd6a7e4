"""structlog set-up: JSON lines off a terminal, readable console output on one.

Fields bound with `structlog.contextvars` (`job_id`, `run_id`, `turn`) appear on every line.
"""

from __future__ import annotations

import logging
import sys
from typing import Any, Literal, TextIO

import orjson
import structlog

LogFormat = Literal["auto", "json", "console"]


_printer: list[tuple[TextIO, structlog.PrintLogger]] = []


def _stderr_logger(*_args: object) -> structlog.PrintLogger:
    # Looked up per log call, not once: sys.stderr may be replaced (tests, daemonizing). The
    # printer for the current one is kept, rather than built (with its lock lookup) each time.
    stream = sys.stderr
    if not _printer or _printer[0][0] is not stream:
        _printer[:] = [(stream, structlog.PrintLogger(stream))]
    return _printer[0][1]


def _json(value: object, **options: Any) -> str:
    # orjson: the JSON line of an event in a third of the standard library's time. Keys that
    # are not strings are written as strings; anything orjson cannot write goes through
    # structlog's own fallback (`default`), as with json.dumps.
    return orjson.dumps(
        value, default=options.get("default"), option=orjson.OPT_NON_STR_KEYS
    ).decode()


def configure_logging(fmt: str = "auto", *, level: int = logging.INFO) -> None:
    use_console = fmt == "console" or (fmt == "auto" and sys.stderr.isatty())
    renderer: structlog.types.Processor = (
        structlog.dev.ConsoleRenderer(colors=True)
        if use_console
        else structlog.processors.JSONRenderer(serializer=_json)
    )
    structlog.configure(
        processors=[
            structlog.contextvars.merge_contextvars,
            structlog.processors.add_log_level,
            structlog.processors.TimeStamper(fmt="iso", utc=True),
            structlog.processors.StackInfoRenderer(),
            structlog.processors.format_exc_info,
            renderer,
        ],
        wrapper_class=structlog.make_filtering_bound_logger(level),
        logger_factory=_stderr_logger,
        cache_logger_on_first_use=False,
    )
    # Libraries that use stdlib logging (uvicorn, alembic, httpx) go to stderr at WARNING.
    logging.basicConfig(level=logging.WARNING, stream=sys.stderr, format="%(name)s: %(message)s")
    for noisy in ("LiteLLM", "litellm", "httpx", "alembic"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
