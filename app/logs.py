"""structlog set-up: JSON lines off a terminal, readable console output on one.

Fields bound with `structlog.contextvars` (`job_id`, `run_id`, `turn`) appear on every line.
"""

from __future__ import annotations

import logging
import sys
from typing import Literal

import structlog

LogFormat = Literal["auto", "json", "console"]


def _stderr_logger(*_args: object) -> structlog.PrintLogger:
    # Looked up per logger, not once: sys.stderr may be replaced (tests, daemonizing).
    return structlog.PrintLogger(sys.stderr)


def configure_logging(fmt: str = "auto", *, level: int = logging.INFO) -> None:
    use_console = fmt == "console" or (fmt == "auto" and sys.stderr.isatty())
    renderer: structlog.types.Processor = (
        structlog.dev.ConsoleRenderer(colors=True)
        if use_console
        else structlog.processors.JSONRenderer()
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
