"""Settings from environment variables (names of the existing wa-hub where one exists).

Every setting is documented in ``.env.example``. Values are validated at start-up; a bad value
stops the process with a message naming the variable. Units are in the name (``_MS``,
``_SECONDS``, ``_MINUTES``, ``_DAYS``).
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field, ValidationError, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict


class Settings(BaseSettings):
    """All runtime settings of a hub."""

    model_config = SettingsConfigDict(env_prefix="", case_sensitive=False, extra="ignore",
                                      env_file=None, populate_by_name=True)

    # server
    api_key: str | None = Field(default=None, alias="API_KEY")
    insecure_no_api_key: bool = Field(default=False, alias="WAHUB_INSECURE_NO_API_KEY")
    host: str = Field(default="127.0.0.1", alias="HOST")
    port: int = Field(default=3000, ge=1, le=65535, alias="PORT")
    data_dir: Path = Field(default=Path("./data"), alias="DATA_DIR")
    database_url: str | None = Field(default=None, alias="DATABASE_URL")
    engine: Literal["sandbox", "whatsmeow"] = Field(default="whatsmeow", alias="WAHUB_ENGINE")
    log_level: Literal["debug", "info", "warning", "error"] = Field(default="info", alias="LOG_LEVEL")
    log_format: Literal["auto", "json", "console"] = Field(default="auto", alias="LOG_FORMAT")
    max_body_bytes: int = Field(default=256 * 1024, ge=1024, alias="MAX_BODY_BYTES")
    waapi_envelope: bool = Field(default=False, alias="WAAPI_ENVELOPE")
    metrics_require_auth: bool = Field(default=True, alias="METRICS_REQUIRE_AUTH")

    # outbox
    max_sends_per_minute: int = Field(default=6, ge=1, alias="MAX_SENDS_PER_MINUTE_PER_INSTANCE")
    max_sends_per_hour: int = Field(default=60, ge=1, alias="MAX_SENDS_PER_HOUR_PER_INSTANCE")
    max_queue_size: int = Field(default=200, ge=1, alias="MAX_QUEUE_SIZE")
    send_interval_ms: int = Field(default=500, ge=0, alias="SEND_INTERVAL_MS")
    send_jitter_ms: int = Field(default=0, ge=0, alias="SEND_JITTER_MS")
    retry_base_backoff_ms: int = Field(default=5000, ge=1, alias="RETRY_BASE_BACKOFF_MS")
    retry_max_backoff_ms: int = Field(default=120000, ge=1, alias="RETRY_MAX_BACKOFF_MS")
    max_send_attempts: int = Field(default=5, ge=1, alias="MAX_SEND_ATTEMPTS")
    auto_idempotency_window_seconds: int = Field(default=600, ge=0, alias="AUTO_IDEMPOTENCY_WINDOW_SECONDS")
    idempotency_retention_days: float = Field(default=7, gt=0, alias="IDEMPOTENCY_RETENTION_DAYS")
    purge_interval_minutes: float = Field(default=60, gt=0, alias="PURGE_INTERVAL_MINUTES")
    uncertain_policy: Literal["report", "resend"] = Field(default="report", alias="UNCERTAIN_POLICY")
    typing_indicator_enabled: bool = Field(default=False, alias="TYPING_INDICATOR_ENABLED")
    uncertain_evidence_window_seconds: int = Field(default=300, ge=0, alias="UNCERTAIN_EVIDENCE_WINDOW_SECONDS")
    shutdown_grace_ms: int = Field(default=15000, ge=0, alias="SHUTDOWN_GRACE_MS")

    # lifecycle
    restart_backoff_ms: int = Field(default=2000, ge=0, alias="RESTART_BACKOFF_MS")
    max_restarts_per_window: int = Field(default=4, ge=0, alias="MAX_RESTARTS_PER_WINDOW")
    restart_window_minutes: float = Field(default=10, gt=0, alias="RESTART_WINDOW_MINUTES")
    soft_restart_timeout_ms: int = Field(default=180000, ge=1, alias="SOFT_RESTART_TIMEOUT_MS")
    hard_restart_timeout_ms: int = Field(default=180000, ge=1, alias="HARD_RESTART_TIMEOUT_MS")
    ready_probe_timeout_ms: int = Field(default=60000, ge=1, alias="READY_PROBE_TIMEOUT_MS")
    qr_window_ms: int = Field(default=160000, ge=1, alias="QR_WINDOW_MS")
    restore_stagger_ms: int = Field(default=2000, ge=0, alias="RESTORE_STAGGER_MS")
    restricted_auto_resume: bool = Field(default=False, alias="RESTRICTED_AUTO_RESUME")

    # webhooks
    webhook_secret: str | None = Field(default=None, alias="WEBHOOK_SECRET")
    webhook_auth_token: str | None = Field(default=None, alias="WEBHOOK_AUTH_TOKEN")
    webhook_timeout_ms: int = Field(default=10000, ge=100, alias="WEBHOOK_TIMEOUT_MS")
    webhook_retry_base_ms: int = Field(default=1000, ge=1, alias="WEBHOOK_RETRY_BASE_MS")
    webhook_retry_max_ms: int = Field(default=900000, ge=1, alias="WEBHOOK_RETRY_MAX_MS")
    webhook_max_attempts: int = Field(default=30, ge=1, alias="WEBHOOK_MAX_ATTEMPTS")
    webhook_max_in_flight_per_url: int = Field(default=2, ge=1, le=16, alias="WEBHOOK_MAX_IN_FLIGHT_PER_URL")

    # sandbox engine
    sandbox_auto_link_ms: int | None = Field(default=None, ge=0, alias="SANDBOX_AUTO_LINK_MS")
    sandbox_send_latency_ms: int = Field(default=150, ge=0, alias="SANDBOX_SEND_LATENCY_MS")
    sandbox_qr_refresh_ms: int = Field(default=20000, ge=100, alias="SANDBOX_QR_REFRESH_MS")
    sandbox_delivery_log: Path | None = Field(default=None, alias="SANDBOX_DELIVERY_LOG")
    sandbox_auto_ack: bool = Field(default=True, alias="SANDBOX_AUTO_ACK")

    @field_validator("api_key", "webhook_secret", "webhook_auth_token", "database_url", mode="before")
    @classmethod
    def _blank_is_none(cls, v: object) -> object:
        return None if isinstance(v, str) and not v.strip() else v

    @field_validator("sandbox_auto_link_ms", "sandbox_delivery_log", mode="before")
    @classmethod
    def _blank_optional(cls, v: object) -> object:
        return None if isinstance(v, str) and not v.strip() else v

    @model_validator(mode="after")
    def _check(self) -> Settings:
        if self.api_key is None and not self.insecure_no_api_key:
            raise ValueError("API_KEY is required (or set WAHUB_INSECURE_NO_API_KEY=true for local development)")
        if self.api_key is not None and len(self.api_key) < 8:
            raise ValueError("API_KEY must be at least 8 characters")
        if self.max_sends_per_minute > self.max_sends_per_hour:
            raise ValueError("MAX_SENDS_PER_MINUTE_PER_INSTANCE must not exceed MAX_SENDS_PER_HOUR_PER_INSTANCE")
        if self.retry_base_backoff_ms > self.retry_max_backoff_ms:
            raise ValueError("RETRY_BASE_BACKOFF_MS must not exceed RETRY_MAX_BACKOFF_MS")
        return self

    @property
    def resolved_database_url(self) -> str:
        """``DATABASE_URL``, or the SQLite file ``<DATA_DIR>/wa-hub.sqlite3``."""
        if self.database_url:
            url = self.database_url
            if url.startswith("postgresql://") or url.startswith("postgres://"):
                url = "postgresql+asyncpg://" + url.split("://", 1)[1]
            if url.startswith("sqlite:///"):
                url = "sqlite+aiosqlite:///" + url[len("sqlite:///"):]
            return url
        return f"sqlite+aiosqlite:///{(self.data_dir / 'wa-hub.sqlite3').resolve()}"


def describe_error(exc: ValidationError) -> str:
    """A one-line-per-problem message naming each bad variable."""
    lines = []
    for err in exc.errors():
        loc = ".".join(str(p) for p in err.get("loc", ()) if p != "__root__")
        name = loc.upper() if loc else "settings"
        msg = err.get("msg", "invalid").removeprefix("Value error, ")
        lines.append(f"{name}: {msg}" if loc else msg)
    return "invalid settings:\n  " + "\n  ".join(lines)


def load(**overrides: object) -> Settings:
    """Read settings from the environment, with keyword overrides (field names) on top."""
    return Settings(**overrides)  # type: ignore[arg-type]
