"""``wa-hub serve`` refuses to start with one clear line — before any engine starts — when it cannot run.

Each case runs the real process: a second hub on a busy port, a second hub on a data directory in
use, a data directory the user cannot write, and an API key too short to be safe.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.server import API_KEY, Server, free_port

SETPRIV = shutil.which("setpriv")
NOBODY = 65534


def serve(data_dir: Path, port: int, *, user: int | None = None, **env: str) -> subprocess.CompletedProcess[str]:
    """Run ``wa-hub serve`` to its end (it is expected to refuse); optionally as an unprivileged user."""
    full_env = {"PATH": os.environ["PATH"], "API_KEY": API_KEY, "DATA_DIR": str(data_dir), "PORT": str(port),
                "HOST": "127.0.0.1", "WAHUB_ENGINE": "whatsmeow", "LOG_FORMAT": "json",
                "PYTHONDONTWRITEBYTECODE": "1", **env}
    cmd = [sys.executable, "-m", "wahub.cli", "serve"]
    if user is not None:
        assert SETPRIV is not None
        cmd = [SETPRIV, f"--reuid={user}", f"--regid={user}", "--clear-groups", *cmd]
    return subprocess.run(cmd, env=full_env, capture_output=True, text=True, timeout=60)


def _one_line(proc: subprocess.CompletedProcess[str]) -> str:
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1, proc.stderr
    assert "Traceback" not in proc.stderr
    return lines[0]


@pytest.fixture
def open_dir() -> Iterator[Path]:
    """A directory every user can reach (pytest's tmp_path is private to root)."""
    path = Path(tempfile.mkdtemp(prefix="wahub-startup-"))
    path.chmod(0o755)
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


@pytest.mark.timeout(90)
def test_second_hub_on_a_busy_port_fails_at_once_before_any_engine_starts(tmp_path: Path) -> None:
    with Server(tmp_path / "first") as first:
        proc = serve(tmp_path / "first", first.port)
        assert proc.returncode == 1
        line = _one_line(proc)
        assert f"port {first.port}" in line and "already in use" in line and "PORT" in line
        assert "listening" not in proc.stderr
        # it never reached the data directory either: the first hub's lock file still names the first hub
        assert (tmp_path / "first" / "wa-hub.lock").read_text().strip() == str(first.proc.pid)  # type: ignore[union-attr]


@pytest.mark.timeout(90)
def test_second_hub_on_a_data_directory_in_use_is_refused(tmp_path: Path) -> None:
    with Server(tmp_path / "shared") as first:
        proc = serve(tmp_path / "shared", free_port())
        assert proc.returncode == 1
        line = _one_line(proc)
        assert f"pid {first.proc.pid}" in line and "DATA_DIR" in line  # type: ignore[union-attr]
        assert first.client.get("/ready").status_code == 200
    # the lock dies with its holder: a new hub starts on the same directory after the first stopped
    with Server(tmp_path / "shared") as again:
        assert again.client.get("/ready").status_code == 200


@pytest.mark.skipif(SETPRIV is None or os.geteuid() != 0, reason="needs root to run as another user")
@pytest.mark.timeout(60)
def test_unwritable_data_directory_is_one_line_with_the_fix(open_dir: Path) -> None:
    data = open_dir / "data"
    data.mkdir(mode=0o755)  # owned by root: not writable by nobody
    proc = serve(data, free_port(), user=NOBODY)
    assert proc.returncode == 1
    line = _one_line(proc)
    assert str(data) in line and "not writable" in line and "chown" in line
    missing = open_dir / "no-such-parent" / "data"
    proc = serve(missing, free_port(), user=NOBODY)
    line = _one_line(proc)
    assert "cannot create the data directory" in line and "DATA_DIR" in line


def test_a_short_api_key_is_refused(tmp_path: Path) -> None:
    proc = serve(tmp_path, free_port(), API_KEY="12345678")
    assert proc.returncode == 2
    assert "API_KEY must be at least 16 characters" in proc.stderr
    assert not (tmp_path / "wa-hub.lock").exists()


@pytest.mark.timeout(60)
def test_oversized_or_too_many_headers_get_431_before_authentication(tmp_path: Path) -> None:
    with Server(tmp_path / "hub") as hub:
        many = b"".join(b"X-H-%d: v\r\n" % i for i in range(150))
        big = b"X-Big: " + b"a" * (64 * 1024) + b"\r\n"
        for extra in (many, big):
            with socket.create_connection(("127.0.0.1", hub.port), timeout=10) as s:
                s.sendall(b"GET /instances HTTP/1.1\r\nHost: x\r\n" + extra + b"\r\n")
                assert s.recv(64).startswith(b"HTTP/1.1 431 ")
        # a head streamed slowly without an end is cut off too, and the hub keeps serving
        with socket.create_connection(("127.0.0.1", hub.port), timeout=10) as s:
            s.sendall(b"GET /instances HTTP/1.1\r\nHost: x\r\nX-Slow: ")
            for _ in range(200):
                try:
                    s.sendall(b"b" * 1000)
                except OSError:
                    break
            assert s.recv(64).startswith(b"HTTP/1.1 431 ")
        assert hub.client.get("/instances").status_code == 200
