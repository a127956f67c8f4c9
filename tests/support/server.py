"""Run the real ``wa-hub serve`` process on a free loopback port for acceptance tests."""

from __future__ import annotations

import ctypes
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import httpx

from tests.support import polling

API_KEY = "test-api-key-0123456789"


def _die_with_parent() -> None:
    """In the child: SIGKILL it when the test process dies, even if the test never got to stop it."""
    if sys.platform == "linux":
        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG


def free_port() -> int:
    """An unused TCP port on 127.0.0.1."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Server:
    """A ``wa-hub serve`` subprocess; ``client`` is an authenticated httpx client for it."""

    def __init__(self, data_dir: Path, env: dict[str, str] | None = None, port: int | None = None) -> None:
        self.data_dir = data_dir
        self.port = port or free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.env = {**os.environ, "API_KEY": API_KEY, "DATA_DIR": str(data_dir), "PORT": str(self.port),
                    "HOST": "127.0.0.1", "WAHUB_ENGINE": "sandbox", "LOG_FORMAT": "json",
                    "SANDBOX_SEND_LATENCY_MS": "0", "RESTORE_STAGGER_MS": "0", **(env or {})}
        self.proc: subprocess.Popen[bytes] | None = None
        self.log_path = data_dir / f"server-{self.port}.log"
        self.client = httpx.Client(base_url=self.url, headers={"authorization": f"Bearer {API_KEY}"}, timeout=30)

    def start(self, timeout: float = 30.0) -> Server:
        """Start the process and wait until ``/health`` answers."""
        self.data_dir.mkdir(parents=True, exist_ok=True)
        with open(self.log_path, "ab") as log:  # the child keeps its own copy of the descriptor
            self.proc = subprocess.Popen([sys.executable, "-m", "wahub.cli", "serve"], env=self.env, stdout=log,
                                         stderr=subprocess.STDOUT, start_new_session=True,
                                         preexec_fn=_die_with_parent)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"wa-hub exited with {self.proc.returncode}: {self.log_text()[-2000:]}")
            try:
                if httpx.get(self.url + "/ready", timeout=1).status_code == 200:
                    return self
            except httpx.HTTPError:
                pass
            time.sleep(0.05)
        self.kill()  # never leave a half-started process behind
        raise TimeoutError(f"wa-hub did not start: {self.log_text()[-2000:]}")

    def kill(self) -> None:
        """SIGKILL the process (crash)."""
        if self.proc is not None and self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(10)

    def stop(self) -> None:
        """SIGTERM and wait (graceful)."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                self.kill()

    def log_text(self) -> str:
        """Everything the process printed."""
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def wait_until(self, fn: Any, timeout: float = 30.0, interval: float = 0.05) -> Any:
        """Poll ``fn()`` until it returns a truthy value; returns it. Raises TimeoutError."""
        return polling.wait_until(fn, timeout, interval)

    def __enter__(self) -> Server:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
        self.client.close()
