"""Settings from environment variables (names of the existing wa-hub where one exists).

Every setting is documented in ``.env.example``. Values are validated at start-up; a bad value
stops the process with a message naming the variable. Units are in the name (``_MS``,
``_SECONDS``, ``_MINUTES``, ``_DAYS``). The command line also reads a ``.env`` file from the
working directory (:func:`load_env_file`; the environment wins), and :func:`load` warns once for
each variable it does not use: an unknown ``WA*``/``WAHUB*`` name or a name of the existing
(Node) wa-hub with no meaning here (:data:`NODE_NAMES`, every name's fate in docs/compatibility.md).
"""

from __future__ import annotations

import base64
import os
import sys
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Literal

from dotenv import dotenv_values
from pydantic import AliasChoices, Field, ValidationError, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from wahub.domain import webhookurl

#: Shortest API key accepted: 16 characters keep even a lower-case key beyond online guessing
#: (the failed-key brake allows a few guesses a minute per client).
MIN_API_KEY_LENGTH = 16


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
    read_timeout_ms: int = Field(default=20000, ge=100, le=600_000, alias="READ_TIMEOUT_MS")
    resolve_cache_seconds: int = Field(default=86_400, ge=0, le=365 * 86_400, alias="RESOLVE_CACHE_SECONDS")
    metrics_require_auth: bool = Field(default=True, alias="METRICS_REQUIRE_AUTH")

    # outbox
    max_sends_per_minute: int = Field(default=6, ge=1, alias="MAX_SENDS_PER_MINUTE_PER_INSTANCE")
    max_sends_per_hour: int = Field(default=60, ge=1, alias="MAX_SENDS_PER_HOUR_PER_INSTANCE")
    max_queue_size: int = Field(default=200, ge=1, alias="MAX_QUEUE_SIZE")
    send_interval_ms: int = Field(default=500, ge=0, alias="SEND_INTERVAL_MS")
    send_jitter_ms: int = Field(default=0, ge=0, alias="SEND_JITTER_MS")
    send_claim_lead_ms: int = Field(default=500, ge=0, le=1000, alias="SEND_CLAIM_LEAD_MS")
    retry_base_backoff_ms: int = Field(default=5000, ge=1, alias="RETRY_BASE_BACKOFF_MS")
    retry_max_backoff_ms: int = Field(default=120000, ge=1, alias="RETRY_MAX_BACKOFF_MS")
    max_send_attempts: int = Field(default=5, ge=1, alias="MAX_SEND_ATTEMPTS")
    auto_idempotency_window_seconds: int = Field(default=600, ge=0, alias="AUTO_IDEMPOTENCY_WINDOW_SECONDS")
    idempotency_retention_days: float = Field(default=7, gt=0, alias="IDEMPOTENCY_RETENTION_DAYS")
    purge_interval_minutes: float = Field(default=60, gt=0, alias="PURGE_INTERVAL_MINUTES")
    uncertain_policy: Literal["report", "resend"] = Field(default="report", alias="UNCERTAIN_POLICY")
    typing_indicator_enabled: bool = Field(
        default=False, alias="TYPING_INDICATOR_ENABLED", validation_alias=AliasChoices(
            "TYPING_INDICATOR_ENABLED", "TYPING_INDICATOR_ENABLED_DEFAULT", "typing_indicator_enabled"))
    allow_status_broadcast: bool = Field(default=False, alias="ALLOW_STATUS_BROADCAST")
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
    # at most this many instances connecting at once during boot restore; starts are spread
    # RESTORE_STAGGER_MS / RESTORE_CONCURRENCY apart (1 = the old one-by-one restore)
    restore_concurrency: int = Field(default=25, ge=1, le=1000, alias="RESTORE_CONCURRENCY")
    # zombie session: degraded after this many sends, or this many minutes after a send, without
    # any server ack or receipt (0 turns a rule off)
    degraded_after_sends: int = Field(default=10, ge=0, le=100_000, alias="DEGRADED_AFTER_SENDS")
    degraded_after_minutes: float = Field(default=10, ge=0, le=10_080, alias="DEGRADED_AFTER_MINUTES")
    restricted_auto_resume: bool = Field(default=False, alias="RESTRICTED_AUTO_RESUME")
    disable_auto_reconnect: bool = Field(default=False, alias="DISABLE_AUTO_RECONNECT")
    min_disconnect_cooldown_ms: int = Field(default=0, ge=0, le=86_400_000, alias="MIN_DISCONNECT_COOLDOWN_MS")

    # webhooks
    webhook_secret: str | None = Field(default=None, alias="WEBHOOK_SECRET", validation_alias=AliasChoices(
        "WEBHOOK_SECRET", "MAIN_APP_WEBHOOK_SECRET", "webhook_secret"))
    webhook_auth_token: str | None = Field(default=None, alias="WEBHOOK_AUTH_TOKEN", validation_alias=AliasChoices(
        "WEBHOOK_AUTH_TOKEN", "WEBHOOK_BEARER_TOKEN", "webhook_auth_token"))
    webhook_protection_bypass: str | None = Field(
        default=None, alias="WEBHOOK_PROTECTION_BYPASS", validation_alias=AliasChoices(
            "WEBHOOK_PROTECTION_BYPASS", "VERCEL_AUTOMATION_BYPASS_SECRET", "webhook_protection_bypass"))
    webhook_timeout_ms: int = Field(default=10000, ge=100, alias="WEBHOOK_TIMEOUT_MS")
    webhook_retry_base_ms: int = Field(default=1000, ge=1, alias="WEBHOOK_RETRY_BASE_MS")
    webhook_retry_max_ms: int = Field(default=900000, ge=1, alias="WEBHOOK_RETRY_MAX_MS")
    webhook_max_attempts: int = Field(default=30, ge=1, alias="WEBHOOK_MAX_ATTEMPTS")
    webhook_max_in_flight_per_url: int = Field(default=2, ge=1, le=16, alias="WEBHOOK_MAX_IN_FLIGHT_PER_URL")
    webhook_allowed_networks: str = Field(default="loopback", alias="WEBHOOK_ALLOWED_NETWORKS")

    # media and the other send actions (send-media, download-media, send-seen, presence)
    media_max_bytes: int = Field(default=16 * 1024 * 1024, ge=1024, le=100 * 1024 * 1024, alias="MEDIA_MAX_BYTES")
    media_mime_types: str = Field(default="image/jpeg,image/png,image/webp,image/gif,video/mp4,video/3gpp,audio/*,"
                                  "application/pdf,application/zip,application/msword,application/vnd.*,text/plain,"
                                  "text/csv", alias="MEDIA_MIME_TYPES")
    media_fetch_timeout_ms: int = Field(default=30_000, ge=100, le=600_000, alias="MEDIA_FETCH_TIMEOUT_MS")
    media_download_max_bytes: int = Field(default=64 * 1024 * 1024, ge=1024, le=2 * 1024 * 1024 * 1024,
                                          alias="MEDIA_DOWNLOAD_MAX_BYTES")
    engine_action_timeout_ms: int = Field(default=15_000, ge=100, le=600_000, alias="ENGINE_ACTION_TIMEOUT_MS")

    # the existing wa-hub's files, read by `wa-hub import-node` (relative paths: inside its DIR)
    node_instances_path: Path = Field(default=Path(".wwebjs_instances.json"), alias="INSTANCES_DATA_PATH")
    node_idempotency_path: Path = Field(default=Path(".wwebjs_idempotency.json"), alias="IDEMPOTENCY_DATA_PATH")

    # several hub nodes on one PostgreSQL (docs/scaling.md); auto = on with PostgreSQL, off with SQLite
    node_leases: Literal["auto", "on", "off"] = Field(default="auto", alias="NODE_LEASES")
    node_id: str | None = Field(default=None, min_length=1, max_length=120, alias="NODE_ID")
    node_address: str | None = Field(default=None, alias="NODE_ADDRESS")
    node_capacity: int | None = Field(default=None, ge=1, le=100_000, alias="NODE_CAPACITY")
    node_lease_ttl_seconds: float = Field(default=30, ge=1, le=3600, alias="NODE_LEASE_TTL_SECONDS")
    # whatsmeow session files (empty = DATA_DIR/sessions); with several nodes a volume every node mounts
    sessions_dir: Path | None = Field(default=None, alias="SESSIONS_DIR")

    # sandbox engine
    sandbox_auto_link_ms: int | None = Field(default=None, ge=0, alias="SANDBOX_AUTO_LINK_MS")
    sandbox_send_latency_ms: int = Field(default=150, ge=0, alias="SANDBOX_SEND_LATENCY_MS")
    sandbox_qr_refresh_ms: int = Field(default=20000, ge=100, alias="SANDBOX_QR_REFRESH_MS")
    sandbox_delivery_log: Path | None = Field(default=None, alias="SANDBOX_DELIVERY_LOG")
    sandbox_auto_ack: bool = Field(default=True, alias="SANDBOX_AUTO_ACK")

    # cloud engine (Meta's WhatsApp Cloud API)
    cloud_credentials_key: str | None = Field(default=None, alias="WAHUB_CLOUD_CREDENTIALS_KEY")
    cloud_graph_url: str = Field(default="https://graph.facebook.com", alias="WAHUB_CLOUD_GRAPH_URL")
    cloud_graph_timeout_ms: int = Field(default=15000, ge=100, le=600_000, alias="WAHUB_CLOUD_GRAPH_TIMEOUT_MS")
    cloud_webhook_max_bytes: int = Field(default=512 * 1024, ge=1024, le=64 * 1024 * 1024,
                                         alias="WAHUB_CLOUD_WEBHOOK_MAX_BYTES")

    @field_validator("log_level", mode="before")
    @classmethod
    def _log_level(cls, v: object) -> object:
        """Any case; ``warn`` (the existing wa-hub's spelling) means ``warning``."""
        if isinstance(v, str):
            v = v.strip().lower()
            return "warning" if v == "warn" else v
        return v

    @field_validator("api_key", "webhook_secret", "webhook_auth_token", "webhook_protection_bypass", "database_url",
                     "node_id", "node_address", "node_capacity", "sessions_dir", mode="before")
    @classmethod
    def _blank_is_none(cls, v: object) -> object:
        return None if isinstance(v, str) and not v.strip() else v

    @field_validator("sandbox_auto_link_ms", "sandbox_delivery_log", mode="before")
    @classmethod
    def _blank_optional(cls, v: object) -> object:
        return None if isinstance(v, str) and not v.strip() else v

    @field_validator("cloud_credentials_key", mode="before")
    @classmethod
    def _fernet_keys(cls, v: object) -> object:
        """Blank = unset; otherwise comma-separated Fernet keys (32 bytes, url-safe base64 each)."""
        if not isinstance(v, str) or not v.strip():
            return None if isinstance(v, str) else v
        for part in (p.strip() for p in v.split(",")):
            try:
                raw = base64.urlsafe_b64decode(part.encode("ascii"))
            except (ValueError, UnicodeEncodeError):
                raw = b""
            if len(raw) != 32 or len(part) != 44:
                raise ValueError("must be Fernet keys (44 characters of url-safe base64 each), comma-separated; "
                                 "generate one with `python -c \"from cryptography.fernet import Fernet; "
                                 "print(Fernet.generate_key().decode())\"`")
        return v.strip()

    @field_validator("cloud_graph_url")
    @classmethod
    def _graph_url(cls, v: str) -> str:
        if not v.startswith(("https://", "http://")):
            raise ValueError("must be an http(s) URL such as https://graph.facebook.com")
        return v.rstrip("/")

    @field_validator("webhook_allowed_networks")
    @classmethod
    def _networks(cls, v: str) -> str:
        webhookurl.parse_policy(v)  # raises ValueError naming the unknown word
        return v

    @model_validator(mode="after")
    def _check(self) -> Settings:
        if self.api_key is None and not self.insecure_no_api_key:
            raise ValueError("API_KEY is required (or set WAHUB_INSECURE_NO_API_KEY=true for local development)")
        if self.api_key is not None and len(self.api_key) < MIN_API_KEY_LENGTH:
            raise ValueError(f"API_KEY must be at least {MIN_API_KEY_LENGTH} characters (generate one with "
                             "`openssl rand -base64 24`)")
        if self.max_sends_per_minute > self.max_sends_per_hour:
            raise ValueError("MAX_SENDS_PER_MINUTE_PER_INSTANCE must not exceed MAX_SENDS_PER_HOUR_PER_INSTANCE")
        if self.retry_base_backoff_ms > self.retry_max_backoff_ms:
            raise ValueError("RETRY_BASE_BACKOFF_MS must not exceed RETRY_MAX_BACKOFF_MS")
        return self

    @property
    def leases_on(self) -> bool:
        """Whether this node shares its instances with other nodes through leases (``NODE_LEASES``)."""
        if self.node_leases == "auto":
            return not self.resolved_database_url.startswith("sqlite")
        return self.node_leases == "on"

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


def load(*, warn: Callable[[str], None] | None = None, **overrides: object) -> Settings:
    """Read settings from the environment, with keyword overrides (field names) on top.

    Warns once (on stderr unless ``warn`` is given) for each variable of :func:`unused_names`.
    """
    settings = Settings(**overrides)  # type: ignore[arg-type]
    for line in unused_names(os.environ):
        (warn or _stderr)(line)
    return settings


def _stderr(line: str) -> None:
    sys.stderr.write(f"WARNING: {line}\n")


def load_env_file(path: Path = Path(".env")) -> list[str]:
    """Put the variables of a ``.env`` file into the environment; variables already set win.

    Returns the names it set. A missing file is not an error (as the existing wa-hub's dotenv).
    """
    if not path.is_file():
        return []
    added = []
    for name, value in dotenv_values(path).items():
        if value is not None and name not in os.environ:
            os.environ[name] = value
            added.append(name)
    return added


def known_names() -> set[str]:
    """Every environment name a setting reads (aliases included)."""
    names: set[str] = set()
    for field in Settings.model_fields.values():
        if field.alias:
            names.add(field.alias)
        choices = field.validation_alias
        if isinstance(choices, AliasChoices):
            names.update(c for c in choices.choices if isinstance(c, str) and c.isupper())
    return names


def unused_names(environ: Mapping[str, str]) -> list[str]:
    """One line per set variable this hub does not use: existing wa-hub names, then unknown ``WA*`` names."""
    known = known_names()
    out = []
    for name in sorted(environ):
        if name in known:
            continue
        fate = node_fate(name)
        if fate is not None and fate:
            out.append(f"{name} (a setting of the existing wa-hub) is not used here: {fate}")
        elif fate is None and (name.startswith("WA") or name.startswith("WAHUB")) and name not in _FOREIGN_WA:
            out.append(f"{name} is not a wa-hub setting and is ignored (see .env.example for the names)")
    return out


_FOREIGN_WA = frozenset({"WAYLAND_DISPLAY", "WAHUB_TEST_PG_URL", "WAHUB_CHROMIUM"})  # not settings


def node_fate(name: str) -> str | None:
    """Why an existing wa-hub name is not read here ('' = nothing to say); None if it is not one of them."""
    if name in NODE_NAMES:
        return NODE_NAMES[name]
    for prefix, fate in NODE_PREFIXES.items():
        if name.startswith(prefix):
            return fate
    return None


_BROWSER = "there is no browser here (whatsmeow engine)"
_READY = "replaced by READY_PROBE_TIMEOUT_MS and QR_WINDOW_MS"
_SEEN = "no read-receipt simulation here"
_RESTORE = "replaced by RESTORE_STAGGER_MS"
_SENTRY = "no Sentry here; use GET /metrics (Prometheus)"
_LOWPOWER = "there is no low-power syncing mode here"
_RESTRICT = "a different model here: the ban's expiry plus RESTRICTED_AUTO_RESUME, exponential RESTART_BACKOFF_MS"
# Names the existing wa-hub reads that this hub does not; those it reads are Settings aliases.
NODE_NAMES: dict[str, str] = {
    **dict.fromkeys(("SESSION_DATA_PATH", "AUTH_BASE_DIR"), "whatsapp-web.js sessions cannot move to this engine; "
                    "sessions live in DATA_DIR/sessions (link again with a QR after `wa-hub import-node`)"),
    **dict.fromkeys(("TYPING_INDICATOR_MIN_MS", "TYPING_INDICATOR_MAX_MS", "TYPING_INDICATOR_MAX_TOTAL_MS"),
                    "the typing pause is fixed here"),
    **dict.fromkeys(("READY_TIMEOUT_MS", "INIT_TIMEOUT_MS", "READY_WATCHDOG_MS", "READY_POLL_INTERVAL_MS",
                     "READY_TIMEOUT_PAUSE_MIN", "CONNECTING_WATCHDOG_MS", "CONNECTING_WATCHDOG_MAX_RESTARTS",
                     "QR_SYNC_GRACE_MS", "QR_STALE_MS", "QR_TTL_MS", "QR_MAX_RECOVERY_ATTEMPTS",
                     "QR_RECOVERY_WATCHDOG_INTERVAL_MS", "QR_RECOVERY_BACKOFF_MS", "HEALTH_CHECK_INTERVAL_MIN",
                     "ZOMBIE_INACTIVITY_THRESHOLD_MIN"), _READY),
    **dict.fromkeys(("MARK_SEEN_AFTER_SEND", "MARK_SEEN_ON_RELEVANT_INCOMING", "MARK_SEEN_PROBABILITY_INCOMING",
                     "MARK_SEEN_AFTER_SEND_DELAY_MIN_MS", "MARK_SEEN_AFTER_SEND_DELAY_MAX_MS",
                     "READING_DELAY_MIN_MS", "READING_DELAY_MAX_MS"), _SEEN),
    **dict.fromkeys(("RESTORE_COOLDOWN_MS", "RESTORE_MIN_FREE_MEM_MB", "RESTORE_MAX_ATTEMPTS",
                     "RESTORE_BACKOFF_BASE_MS"), _RESTORE),
    **dict.fromkeys(("SENTRY_DSN", "SENTRY_ENVIRONMENT", "SENTRY_RELEASE", "SENTRY_TRACES_SAMPLE_RATE",
                     "SENTRY_PROFILES_SAMPLE_RATE", "WA_HUB_INSTANCE_ID", "WA_HUB_INSTANCE_NAME"), _SENTRY),
    **dict.fromkeys(("EXTENDED_RESTRICTION_COOLDOWN_HOURS", "RESTART_RATE_LIMIT_EXTRA_HOURS",
                     "RESTART_BACKOFF_SEQUENCE_MS"), _RESTRICT),
    "ADMIN_DEBUG_SECRET": "there are no /__debug routes here",
    **dict.fromkeys(("MAIN_APP_WEBHOOK_BASE", "WEBHOOK_BASE_URL"), "the existing wa-hub never used it either"),
    **dict.fromkeys(("CHROME_PATH", "CHROME_DISABLE_SANDBOX", "CHROME_USE_NO_ZYGOTE", "CHROME_ARGS_EXTRA",
                     "CHROME_LOG_DIR", "CHROME_LAUNCH_TIMEOUT_MS", "WAHUB_LOG_CHROME_ARGS", "PUPPETEER_EXECUTABLE_PATH",
                     "PUPPETEER_DUMPIO", "PUPPETEER_DEBUG_LAUNCH", "DELETE_DESTROY_TIMEOUT_MS",
                     "MESSAGE_FALLBACK_POLL_ENABLED", "MESSAGE_FALLBACK_POLL_INTERVAL_MS", "VIEW_SESSION_JWT_SECRET",
                     "VIEW_SESSION_TIMEOUT_MIN"), _BROWSER),
    **dict.fromkeys(("MAX_OUTBOUND_QUEUE", "OUTBOUND_QUEUE_TTL_MS", "OUTBOUND_DRAIN_DELAY_MS", "INBOUND_FLUSH_BATCH",
                     "INBOUND_FLUSH_INTERVAL_MS", "INBOUND_MAX_BUFFER", "SYNCING_MAX_MS", "FORCE_NORMAL_COOLDOWN_MS"),
                    _LOWPOWER),
    **dict.fromkeys(("GCP_PROJECT_ID", "GCS_BUCKET_NAME", "USE_LAUNCHPAD_FOR_ONBOARDING", "IS_LAUNCHPAD"),
                    "there is no launchpad onboarding here"),
    # generic Node runtime names: set on many machines for other programs, so no warning
    **dict.fromkeys(("NODE_ENV", "NODE_OPTIONS"), ""),
}
NODE_PREFIXES: dict[str, str] = {"SYNC_LITE_BLOCK_": _LOWPOWER, "LAUNCHPAD_": "there is no launchpad onboarding here",
                                 "PM2_": ""}
