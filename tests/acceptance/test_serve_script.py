"""``scripts/serve``: refuses an old Python before creating anything, and says once where the API key is."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
from pathlib import Path

import httpx
import pytest

from tests.support import polling
from tests.support.server import API_KEY, free_port

ROOT = Path(__file__).resolve().parents[2]

# A stand-in for a Python 3.10 interpreter: answers the version probes the way 3.10 would.
OLD_PYTHON = """#!/bin/sh
case "$2" in
  *version_info*'>='*) exit 1 ;;
  *version_info*) echo 3.10.12 ;;
  *) echo "python 3.10 cannot run wa-hub" >&2; exit 1 ;;
esac
"""


def test_old_python_is_refused_before_a_venv_is_made(tmp_path: Path) -> None:
    project = tmp_path / "project"
    (project / "scripts").mkdir(parents=True)
    shutil.copy(ROOT / "scripts" / "serve", project / "scripts" / "serve")
    old = tmp_path / "python3.10"
    old.write_text(OLD_PYTHON)
    old.chmod(0o755)
    proc = subprocess.run([str(project / "scripts" / "serve")], env={"PATH": os.environ["PATH"],
                          "PYTHON": str(old)}, capture_output=True, text=True, timeout=30)
    assert proc.returncode == 1
    assert "needs Python 3.11 or newer" in proc.stderr and "3.10.12" in proc.stderr
    assert "PYTHON=python3.11" in proc.stderr
    assert not (project / ".venv").exists()


# A Python new enough but without the venv module (Debian without python3.11-venv).
NO_VENV_PYTHON = """#!/bin/sh
if [ "$1" = "-m" ]; then echo "No module named venv" >&2; exit 1; fi
case "$2" in *'>='*) exit 0 ;; *) echo "Python 3.11.2" ;; esac
"""


def test_a_venv_left_by_an_old_python_is_removed_not_reused(tmp_path: Path) -> None:
    project = tmp_path / "project"
    (project / "scripts").mkdir(parents=True)
    shutil.copy(ROOT / "scripts" / "serve", project / "scripts" / "serve")
    (project / ".venv" / "bin").mkdir(parents=True)
    stale = project / ".venv" / "bin" / "python"
    stale.write_text(OLD_PYTHON)
    stale.chmod(0o755)
    python = tmp_path / "python3.11"
    python.write_text(NO_VENV_PYTHON)
    python.chmod(0o755)
    proc = subprocess.run([str(project / "scripts" / "serve")], env={"PATH": os.environ["PATH"],
                          "PYTHON": str(python)}, capture_output=True, text=True, timeout=30)
    assert proc.returncode == 1
    assert "removing .venv" in proc.stderr and "apt install python3.11-venv" in proc.stderr
    assert not (project / ".venv").exists()  # nothing half-made is left for the next run to trip on


def _run_until_ready(env: dict[str, str], data: Path) -> str:
    """Start scripts/serve, wait for /ready, stop it (SIGTERM); everything it printed on stderr."""
    port = free_port()
    full = {k: v for k, v in os.environ.items() if k not in ("API_KEY", "WAHUB_API_KEY_FILE")}
    full.update({"DATA_DIR": str(data), "PORT": str(port), "WAHUB_ENGINE": "sandbox", "LOG_FORMAT": "json", **env})
    log_path = data.parent / f"{data.name}.stderr"
    with open(log_path, "wb") as log:
        proc = subprocess.Popen([str(ROOT / "scripts" / "serve")], env=full, stdout=subprocess.DEVNULL, stderr=log,
                                start_new_session=True)
    try:
        polling.wait_until(lambda: proc.poll() is None and _ready(port), timeout=60)
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(20)
    return log_path.read_text()


def _ready(port: int) -> bool:
    try:
        return httpx.get(f"http://127.0.0.1:{port}/ready", timeout=1).status_code == 200
    except httpx.HTTPError:
        return False


@pytest.mark.timeout(120)
def test_every_start_prints_exactly_one_accurate_api_key_line(tmp_path: Path) -> None:
    text = _run_until_ready({}, tmp_path / "gen")
    key_lines = [line for line in text.splitlines() if line.startswith("API key:")]
    assert key_lines == [f"API key: generated once and kept in {tmp_path / 'gen'}/api-key "
                         "(set API_KEY to choose your own)"]
    assert len((tmp_path / "gen" / "api-key").read_text().strip()) >= 16

    text = _run_until_ready({"API_KEY": API_KEY}, tmp_path / "env")
    key_lines = [line for line in text.splitlines() if line.startswith("API key:")]
    assert key_lines == ["API key: the value of the API_KEY environment variable"]
    assert API_KEY not in text
