"""Shared fixtures: settings, an in-process hub with its ASGI app, PostgreSQL URL."""

from __future__ import annotations

import os
import random
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.support.server import API_KEY
from wahub import config
from wahub.runtime.compose import build_hub
from wahub.runtime.hub import Hub
from wahub.web.app import create_app

PG_URL = os.environ.get("WAHUB_TEST_PG_URL")


def make_settings(tmp_path: Path, **overrides: Any) -> config.Settings:
    """Settings for a test hub under ``tmp_path`` (sandbox engine, fast sends)."""
    base: dict[str, Any] = {"api_key": API_KEY, "data_dir": tmp_path, "engine": "sandbox",
                            "sandbox_send_latency_ms": 0, "restore_stagger_ms": 0, "log_format": "json"}
    base.update(overrides)
    return config.Settings(**base)


@pytest.fixture
def settings_factory(tmp_path: Path) -> Any:
    """Build settings for an in-process hub; keyword arguments override fields."""
    return lambda **kw: make_settings(tmp_path, **kw)


class HubClient:
    """An in-process hub and an authenticated async client of its API."""

    def __init__(self, hub: Hub, client: httpx.AsyncClient) -> None:
        self.hub = hub
        self.client = client


@pytest.fixture
async def hub_client(tmp_path: Path, request: pytest.FixtureRequest) -> AsyncIterator[HubClient]:
    """A started hub (real SQLite file, sandbox engine, system clock) and a client for its API.

    Parametrise settings with ``@pytest.mark.parametrize("hub_settings", [{...}], indirect=True)``
    or the ``hub_settings`` fixture.
    """
    overrides = getattr(request, "param", None) or {}
    marker = request.node.get_closest_marker("hub_settings")
    if marker is not None:
        overrides = {**overrides, **marker.kwargs}
    settings = make_settings(tmp_path, **overrides)
    hub = build_hub(settings, rng=random.Random(7))
    await hub.start()
    app = create_app(hub, manage_hub=False)
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://hub",
                                 headers={"authorization": f"Bearer {API_KEY}"}) as client:
        try:
            yield HubClient(hub, client)
        finally:
            await hub.stop()


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "hub_settings(**kw): settings overrides for the hub_client fixture")
