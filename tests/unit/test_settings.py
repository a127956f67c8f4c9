"""Settings are validated at start-up with a message naming the variable; .env.example documents each."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest
from pydantic import ValidationError

from wahub import config

ROOT = Path(__file__).resolve().parents[2]


def test_defaults_match_the_existing_wa_hub(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("API_KEY", "k" * 16)
    s = config.Settings()
    assert (s.max_sends_per_minute, s.max_sends_per_hour, s.max_queue_size, s.send_interval_ms) == (6, 60, 200, 500)
    assert (s.retry_base_backoff_ms, s.retry_max_backoff_ms) == (5000, 120000)
    assert (s.max_restarts_per_window, s.restart_window_minutes) == (4, 10)
    assert s.soft_restart_timeout_ms == s.hard_restart_timeout_ms == 180000
    assert s.idempotency_retention_days == 7


@pytest.mark.parametrize(("env", "needle"), [
    ({"PORT": "abc"}, "PORT"),
    ({"PORT": "70000"}, "PORT"),
    ({"MAX_SENDS_PER_MINUTE_PER_INSTANCE": "0"}, "MAX_SENDS_PER_MINUTE_PER_INSTANCE"),
    ({"SEND_INTERVAL_MS": "-5"}, "SEND_INTERVAL_MS"),
    ({"WAHUB_ENGINE": "puppeteer"}, "WAHUB_ENGINE"),
    ({"MAX_SENDS_PER_MINUTE_PER_INSTANCE": "100", "MAX_SENDS_PER_HOUR_PER_INSTANCE": "10"},
     "MAX_SENDS_PER_MINUTE_PER_INSTANCE"),
])
def test_bad_values_name_the_variable(monkeypatch: pytest.MonkeyPatch, env: dict[str, str], needle: str) -> None:
    monkeypatch.setenv("API_KEY", "k" * 16)
    for k, v in env.items():
        monkeypatch.setenv(k, v)
    with pytest.raises(ValidationError) as err:
        config.Settings()
    assert needle in config.describe_error(err.value)


def test_missing_api_key_is_refused_unless_insecure_mode(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("API_KEY", raising=False)
    with pytest.raises(ValidationError) as err:
        config.Settings()
    assert "API_KEY is required" in config.describe_error(err.value)
    monkeypatch.setenv("WAHUB_INSECURE_NO_API_KEY", "true")
    assert config.Settings().api_key is None


def test_serve_exits_with_a_clear_message_for_a_bad_value(tmp_path: Path) -> None:
    env = {"PATH": "/usr/bin:/bin", "API_KEY": "k" * 16, "SEND_INTERVAL_MS": "soon", "DATA_DIR": str(tmp_path)}
    proc = subprocess.run([sys.executable, "-m", "wahub.cli", "serve"], env=env, capture_output=True, text=True,
                          timeout=30)
    assert proc.returncode == 2
    assert "SEND_INTERVAL_MS" in proc.stderr


def test_env_example_documents_every_setting() -> None:
    documented = set(re.findall(r"^([A-Z][A-Z0-9_]+)=", (ROOT / ".env.example").read_text(), re.M))
    aliases = {f.alias for f in config.Settings.model_fields.values() if f.alias}
    assert aliases - documented == set()
    assert documented - aliases == set()


@pytest.mark.parametrize(("old", "field", "value"), [
    ("MAIN_APP_WEBHOOK_SECRET", "webhook_secret", "main-app-secret"),
    ("WEBHOOK_BEARER_TOKEN", "webhook_auth_token", "bearer-1"),
    ("WEBHOOK_PROTECTION_BYPASS", "webhook_protection_bypass", "bypass-1"),
    ("VERCEL_AUTOMATION_BYPASS_SECRET", "webhook_protection_bypass", "bypass-2"),
    ("TYPING_INDICATOR_ENABLED_DEFAULT", "typing_indicator_enabled", True),
    ("DISABLE_AUTO_RECONNECT", "disable_auto_reconnect", True),
    ("MIN_DISCONNECT_COOLDOWN_MS", "min_disconnect_cooldown_ms", 300000),
    ("LOG_LEVEL", "log_level", "warning"),
])
def test_the_existing_wa_hub_s_names_are_honoured(monkeypatch: pytest.MonkeyPatch, old: str, field: str,
                                                  value: object) -> None:
    monkeypatch.setenv("API_KEY", "k" * 16)
    monkeypatch.setenv(old, {"LOG_LEVEL": "WARN"}.get(old, str(value).lower() if value is True else str(value)))
    assert getattr(config.Settings(), field) == value


def test_the_new_name_wins_over_the_old_alias(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("API_KEY", "k" * 16)
    monkeypatch.setenv("WEBHOOK_SECRET", "new")
    monkeypatch.setenv("MAIN_APP_WEBHOOK_SECRET", "old")
    assert config.Settings().webhook_secret == "new"


def test_unused_names_are_warned_about_once_each(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("API_KEY", "k" * 16)
    env = {"QR_TTL_MS": "1", "WAHUB_ENGIN": "sandbox", "WAAPI_ENVELOPE": "true", "MAIN_APP_WEBHOOK_SECRET": "x",
           "NODE_ENV": "production", "CHROME_PATH": "/usr/bin/chromium", "LAUNCHPAD_ZONE": "x", "HOME": "/root"}
    for k, v in env.items():
        monkeypatch.setenv(k, v)
    lines: list[str] = []
    config.load(warn=lines.append)
    named = sorted(line.split(" ", 1)[0] for line in lines if line.split(" ", 1)[0] in env)
    assert named == ["CHROME_PATH", "LAUNCHPAD_ZONE", "QR_TTL_MS", "WAHUB_ENGIN"]
    assert all(config.node_fate(n) is not None for n in ("CHROME_PATH", "QR_TTL_MS"))


def test_a_dot_env_file_in_the_working_directory_is_read_and_the_environment_wins(tmp_path: Path) -> None:
    (tmp_path / ".env").write_text("API_KEY=from-dot-env-123\nSEND_INTERVAL_MS=100\n")
    env = {"PATH": "/usr/bin:/bin", "SEND_INTERVAL_MS": "soon", "DATA_DIR": str(tmp_path)}
    proc = subprocess.run([sys.executable, "-m", "wahub.cli", "serve"], env=env, capture_output=True, text=True,
                          timeout=30, cwd=tmp_path)
    assert proc.returncode == 2
    assert "SEND_INTERVAL_MS" in proc.stderr  # the environment's bad value won over the file's good one
    assert "API_KEY" not in proc.stderr  # the key came from .env


def test_log_level_warn_starts(tmp_path: Path) -> None:
    env = {"PATH": "/usr/bin:/bin", "API_KEY": "k" * 16, "LOG_LEVEL": "warn", "PORT": "0", "HOST": "nowhere.invalid",
           "DATA_DIR": str(tmp_path)}
    proc = subprocess.run([sys.executable, "-m", "wahub.cli", "serve"], env=env, capture_output=True, text=True,
                          timeout=60)
    assert "Invalid value for '--log-level'" not in proc.stderr
    assert "LOG_LEVEL" not in proc.stderr
