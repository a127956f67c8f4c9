"""A hub whose database file vanished refuses to start instead of starting empty (real processes)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.support.server import API_KEY, Server


@pytest.mark.timeout(90)
def test_missing_database_after_a_run_is_refused_with_one_line(tmp_path: Path) -> None:
    data = tmp_path / "data"
    with Server(data) as server:
        assert server.client.post("/instances", json={"name": "shop"}).status_code in (200, 201)
        server.kill()  # SIGKILL
    db = data / "wa-hub.sqlite3"
    for suffix in ("", "-wal", "-shm"):
        Path(f"{db}{suffix}").unlink(missing_ok=True)

    env = {"PATH": os.environ["PATH"], "API_KEY": API_KEY, "DATA_DIR": str(data), "PORT": str(server.port),
           "HOST": "127.0.0.1", "WAHUB_ENGINE": "sandbox", "LOG_FORMAT": "json"}
    proc = subprocess.run([sys.executable, "-m", "wahub.cli", "serve"], env=env, capture_output=True, text=True,
                          timeout=60)
    assert proc.returncode == 1
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in proc.stderr, proc.stderr
    assert "database" in lines[0] and "missing" in lines[0] and "backup" in lines[0]
    assert not db.exists()  # nothing was created in its place


@pytest.mark.timeout(90)
def test_a_first_start_on_an_empty_directory_still_works(tmp_path: Path) -> None:
    with Server(tmp_path / "fresh") as server:
        assert server.client.get("/instances").status_code == 200
