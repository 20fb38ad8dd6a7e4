"""Service settings, read from `LOOPWRIGHT_*` variables (nested with `__`) and built once.

Nothing reads these at import time: `load_settings()` is called by the CLI and by `create_app`,
and the values are passed down as typed objects.
"""

from __future__ import annotations

from pathlib import Path

from pydantic import BaseModel, Field, SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict

from app.opik_settings import OpikSettings


class GitHubSettings(BaseModel):
    webhook_secret: SecretStr | None = None
    app_id: str | None = None
    private_key: SecretStr | None = None
    token: SecretStr | None = None
    api_url: str = "https://api.github.com"
    bot_name: str = "loopwright"


class SlackSettings(BaseModel):
    signing_secret: SecretStr | None = None
    bot_token: SecretStr | None = None
    api_url: str = "https://slack.com/api"
    allowed_users: list[str] = Field(default_factory=list)
    """Slack user ids that may use the service; empty: everyone in the workspace."""
    allowed_channels: list[str] = Field(default_factory=list)
    """Channel ids where the service takes commands; empty: every channel it is in."""


class Settings(BaseSettings):
    model_config = SettingsConfigDict(
        env_prefix="LOOPWRIGHT_", env_nested_delimiter="__", extra="ignore"
    )

    data_dir: Path = Path("./var")
    database_url: str | None = None  # default: SQLite in the data dir
    workflows_dir: Path = Path("./workflows")
    host: str = "127.0.0.1"
    port: int = 8000
    model: str = "openai/gpt-4.1-mini"
    judge_model: str = "anthropic/claude-haiku-4-5"
    default_workflow: str = "fix-tests"
    max_concurrent_runs: int = Field(default=4, ge=1)
    api_token: SecretStr | None = None
    public_url: str = "http://127.0.0.1:8000"
    github: GitHubSettings = Field(default_factory=GitHubSettings)
    slack: SlackSettings = Field(default_factory=SlackSettings)
    opik: OpikSettings = Field(default_factory=OpikSettings)
    trace_content: bool = True
    """Capture prompts, completions, tool arguments and results in traces (always redacted)."""

    # Not in the public contract's list, but every deployment needs to set them.
    fallback_input_usd_per_mtok: float = Field(default=10.0, ge=0)
    fallback_output_usd_per_mtok: float = Field(default=30.0, ge=0)
    tool_timeout_seconds: float = Field(default=300.0, gt=0)
    shutdown_grace_seconds: float = Field(default=10.0, ge=0)
    stale_after_seconds: float = Field(default=60.0, gt=0)
    log_format: str = "auto"  # auto | json | console

    @property
    def ledger_url(self) -> str:
        if self.database_url:
            return self.database_url
        return f"sqlite:///{(self.data_dir / 'loopwright.db').resolve()}"

    @property
    def runs_dir(self) -> Path:
        return self.data_dir / "runs"


def load_settings(**overrides: object) -> Settings:
    return Settings(**overrides)  # type: ignore[arg-type]
