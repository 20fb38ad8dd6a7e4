"""Shared fixtures. Real model requests are blocked unless a test opts in."""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest
import structlog

os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")


@pytest.fixture(autouse=True)
def _block_model_requests(monkeypatch: pytest.MonkeyPatch) -> None:
    import loops.litellm_model

    monkeypatch.setattr(loops.litellm_model, "ALLOW_MODEL_REQUESTS", False)


@pytest.fixture
def allow_model_requests(monkeypatch: pytest.MonkeyPatch) -> None:
    """For tests that talk to a local OpenAI-compatible server through the real litellm path."""
    import loops.litellm_model

    monkeypatch.setattr(loops.litellm_model, "ALLOW_MODEL_REQUESTS", True)


@pytest.fixture(autouse=True)
def _reset_logging() -> Iterator[None]:
    yield
    structlog.reset_defaults()


@pytest.fixture(scope="session")
def postgres_url() -> Iterator[str | None]:
    """A PostgreSQL URL for this session, or None when no server can be had."""
    from tests.support.postgres import throwaway_postgres

    with throwaway_postgres() as url:
        yield url
