"""A failed SQL statement never logs its parameters (secrets, message text, chat ids) — on SQLite and PostgreSQL.

Logging runs at debug level, the most verbose there is: no line at any level may carry them.
"""

from __future__ import annotations

import io
import logging
import os
import random
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import httpx
import pytest
import sqlalchemy as sa
import structlog

from tests.conftest import make_settings
from tests.support.logs import restored_logging
from tests.support.server import API_KEY
from wahub import observability
from wahub.runtime.compose import build_hub
from wahub.store.sql import SqlStore
from wahub.web.app import create_app

PG_URL = os.environ.get("WAHUB_TEST_PG_URL")
SECRET = "whsec-sentinel-8f3a1c"
BODY = "Body-sentinel-4471 three mangoes"
PHONE = "201099887766"


@pytest.fixture
def log_stream() -> Iterator[io.StringIO]:
    """The real logging configuration at debug level, into a buffer; restored afterwards."""
    with restored_logging():
        stream = io.StringIO()
        observability.configure_logging("debug", "json", stream=stream)
        yield stream


@pytest.fixture(params=["sqlite", "postgres"])
async def db_url(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[str]:
    """An empty database on each engine."""
    if request.param == "sqlite":
        yield f"sqlite+aiosqlite:///{tmp_path / 'hub.sqlite3'}"
        return
    if not PG_URL:
        if os.environ.get("CI"):
            pytest.fail("CI without WAHUB_TEST_PG_URL", pytrace=False)
        pytest.skip("WAHUB_TEST_PG_URL is not set")
    import asyncpg

    database = f"wahub_logs_{uuid.uuid4().hex[:12]}"
    admin = await asyncpg.connect(PG_URL)
    await admin.execute(f'CREATE DATABASE "{database}"')
    await admin.close()
    base = PG_URL.split("://", 1)[1].rsplit("/", 1)[0]
    try:
        yield f"postgresql+asyncpg://{base}/{database}"
    finally:
        admin = await asyncpg.connect(PG_URL)
        await admin.execute(f'DROP DATABASE IF EXISTS "{database}" WITH (FORCE)')
        await admin.close()


async def test_a_failed_statement_logs_no_parameter(db_url: str, log_stream: io.StringIO) -> None:
    store = SqlStore(db_url)
    try:
        with pytest.raises(sa.exc.DBAPIError) as err:
            async with store.engine.connect() as conn:
                await conn.execute(sa.text("SELECT * FROM no_such_table WHERE a = :secret AND b = :body AND c = :chat"),
                                   {"secret": SECRET, "body": BODY, "chat": f"{PHONE}@c.us"})
        structlog.get_logger("wahub.test").exception("statement_failed")
        logging.getLogger("sqlalchemy.engine").error("statement failed", exc_info=err.value)
    finally:
        await store.close()
    text = log_stream.getvalue()
    assert "statement_failed" in text and "no_such_table" in text  # the error itself is still there
    for sentinel in (SECRET, BODY, PHONE):
        assert sentinel not in text
        assert sentinel not in str(err.value)


async def test_a_failing_request_logs_no_secret_body_or_phone(db_url: str, tmp_path: Path,
                                                              log_stream: io.StringIO) -> None:
    """Input only PostgreSQL rejects (ids and names longer than their columns) next to the sentinels."""
    settings = make_settings(tmp_path, database_url=db_url)
    hub = build_hub(settings, rng=random.Random(3))
    await hub.start()
    try:
        app = create_app(hub, manage_hub=False)
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app, raise_app_exceptions=False),
                                     base_url="http://hub", headers={"authorization": f"Bearer {API_KEY}"}) as c:
            r = await c.post("/instances", json={"name": "logs", "webhook": {"url": "http://127.0.0.1:9/h",
                                                                             "secret": SECRET}})
            iid = r.json()["instance"]["id"]
            await c.post(f"/instances/{iid}/client/action/send-message",
                         json={"chatId": PHONE + "1" * 200 + "@g.us", "message": BODY})
            await c.put(f"/instances/{iid}", json={"name": "n" * 300, "webhook": {"url": "http://127.0.0.1:9/h",
                                                                                  "secret": SECRET}})
    finally:
        await hub.stop()
    text = log_stream.getvalue()
    for sentinel in (SECRET, BODY, PHONE):
        assert sentinel not in text, text[-3000:]
