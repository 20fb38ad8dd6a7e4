"""Opik's own settings, read from its `OPIK_*` variables (the names its SDK documents)."""

from __future__ import annotations

from pydantic import Field, SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict


class OpikSettings(BaseSettings):
    """`OPIK_URL_OVERRIDE`, `OPIK_API_KEY`, `OPIK_WORKSPACE`, `OPIK_PROJECT_NAME` and
    `OPIK_DEFAULT_FLUSH_TIMEOUT`: tracing is on when the URL or the API key is set."""

    model_config = SettingsConfigDict(env_prefix="OPIK_", extra="ignore")

    url_override: str | None = None
    api_key: SecretStr | None = None
    workspace: str | None = None
    project_name: str = "loopwright"
    default_flush_timeout: int = Field(default=5, ge=1)
    """Seconds shutdown waits for buffered traces to go out."""
