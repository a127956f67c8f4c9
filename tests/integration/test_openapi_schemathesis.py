"""The OpenAPI document is the truth: schemathesis over ``/openapi.json`` of a real server finds nothing.

A bounded, deterministic pass (``--generation-deterministic``, a fixed number of examples per
operation) against ``wa-hub serve`` on loopback, on SQLite and on PostgreSQL. Checks: no 5xx, every
status code documented, every body matching its documented schema and content type, invalid input
refused with 4xx, and authentication enforced where the document declares it (missing and wrong
keys, with each scheme). On the old main this found undocumented 400/401/403/404/409/413/429/503,
a 422 with another shape, no security scheme, ``/metrics`` documented as JSON, and a 503 for an
instance that was merely not ready.
"""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.server import API_KEY, Server

pytestmark = [pytest.mark.slow, pytest.mark.timeout(300)]
PG_URL = os.environ.get("WAHUB_TEST_PG_URL")
CHECKS = ("not_a_server_error,status_code_conformance,content_type_conformance,response_schema_conformance,"
          "response_headers_conformance,negative_data_rejection,ignored_auth")
EXAMPLES_PER_OPERATION = 12
REPO = Path(__file__).resolve().parents[2]


async def _pg(statement: str) -> None:
    import asyncpg

    assert PG_URL is not None
    admin = await asyncpg.connect(PG_URL)
    try:
        await admin.execute(statement)
    finally:
        await admin.close()


@pytest.fixture(params=["sqlite", "postgres"])
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """An empty database on each engine (PostgreSQL: a database of its own, dropped afterwards)."""
    if request.param == "sqlite":
        yield f"sqlite+aiosqlite:///{tmp_path / 'hub.sqlite3'}"
        return
    if not PG_URL:
        if os.environ.get("CI"):
            pytest.fail("CI without WAHUB_TEST_PG_URL", pytrace=False)
        pytest.skip("WAHUB_TEST_PG_URL is not set")
    database = f"wahub_openapi_{uuid.uuid4().hex[:12]}"
    asyncio.run(_pg(f'CREATE DATABASE "{database}"'))
    base = PG_URL.split("://", 1)[1].rsplit("/", 1)[0]
    try:
        yield f"postgresql+asyncpg://{base}/{database}"
    finally:
        asyncio.run(_pg(f'DROP DATABASE IF EXISTS "{database}" WITH (FORCE)'))


def test_schemathesis_finds_no_server_error_and_no_schema_violation(database_url: str, tmp_path: Path) -> None:
    with Server(tmp_path / "hub", env={"DATABASE_URL": database_url, "MAX_QUEUE_SIZE": "50"}) as server:
        env = {**os.environ, "SCHEMATHESIS_HOOKS": "tests.support.st_hooks", "PYTHONPATH": str(REPO),
               "NO_COLOR": "1"}
        run = subprocess.run(
            [str(Path(sys.executable).parent / "st"), "run", f"{server.url}/openapi.json",
             "--header", f"Authorization: Bearer {API_KEY}", "--checks", CHECKS,
             "--max-examples", str(EXAMPLES_PER_OPERATION), "--generation-deterministic", "--no-shrink",
             "--phases", "examples,coverage,fuzzing", "--workers", "1", "--request-timeout", "20",
             "--no-color", "--max-failures", "20"],
            env=env, capture_output=True, text=True, timeout=280, cwd=tmp_path)
        report = run.stdout[-6000:] + run.stderr[-2000:]
        assert run.returncode == 0, report
        assert "0 failures" in report or "passed" in report, report
        assert "Server error" not in report, report
        assert '"status": 500' not in server.log_text() and "unhandled_error" not in server.log_text()
