"""State faults on the whatsmeow engine: real worker subprocesses, the offline fake client.

DELETE removes the session files in every state; a stale stored session ends in ``needs_qr``
after one hard restart that discards it; WhatsApp unreachable is ``lastError`` within seconds.
"""

from __future__ import annotations

import random
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import make_settings
from tests.integration.test_whatsmeow_hub import engine_of, until
from wahub.domain.lifecycle import State
from wahub.engines.whatsmeow.worker import FAKE_CLIENT_ENV
from wahub.runtime.compose import build_hub
from wahub.runtime.hub import Hub

pytestmark = [pytest.mark.timeout(120), pytest.mark.slow]

HubMaker = Callable[..., Any]
# the fake client's knobs (wahub.engines.whatsmeow.fakeclient; not imported here: it loads neonize)
CONNECT_ERROR_ENV = "WAHUB_FAKE_CONNECT_ERROR"
STALE_SESSION_ENV = "WAHUB_FAKE_STALE_SESSION"


@pytest.fixture
async def hubs(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[HubMaker]:
    monkeypatch.setenv(FAKE_CLIENT_ENV, "wahub.engines.whatsmeow.fakeclient:FakeClient")
    started: list[Hub] = []

    async def make(**overrides: Any) -> Hub:
        settings = make_settings(tmp_path, **{"engine": "whatsmeow", "send_interval_ms": 0,
                                              "restart_backoff_ms": 50, **overrides})
        hub = build_hub(settings, rng=random.Random(7))
        await hub.start()
        started.append(hub)
        return hub

    yield make
    for hub in started:
        await hub.stop()


async def linked(hub: Hub, name: str = "shop") -> str:
    rt = await hub.create_instance(name, None, None)
    await until(lambda: rt.qr is not None)
    await engine_of(hub, rt.id).control(action="scan", phone="201000000099")
    await until(lambda: rt.state == State.READY)
    return rt.id


@pytest.mark.parametrize("fault", ["temporary_ban", "stream_replaced"])
async def test_delete_removes_the_session_in_a_terminal_state(hubs: HubMaker, tmp_path: Path, fault: str) -> None:
    hub = await hubs()
    iid = await linked(hub)
    await engine_of(hub, iid).control(action=fault)
    await until(lambda: hub.instances[iid].state in (State.RESTRICTED, State.LOGGED_OUT))
    assert hub.instances[iid].engine is None  # terminal: no worker runs
    assert (tmp_path / "sessions" / iid).exists()

    assert await hub.delete_instance(iid) is not None  # it existed (the count is of dropped open items)
    assert not (tmp_path / "sessions" / iid).exists()
    rt = await hub.create_instance("shop", None, None)  # the same name again: a QR, not the old number
    await until(lambda: rt.qr is not None and rt.state == State.CONNECTING)
    assert rt.phone is None


async def test_stale_session_ends_in_needs_qr_after_one_discarding_hard_restart(
        hubs: HubMaker, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    hub = await hubs(hard_restart_timeout_ms=1500, soft_restart_timeout_ms=1500, qr_window_ms=1500)
    iid = await linked(hub)
    monkeypatch.setenv(STALE_SESSION_ENV, "1")  # the stored session no longer logs in: no QR, no ready
    await hub.restart(iid, "hard")
    rt = hub.instances[iid]
    await until(lambda: rt.state == State.NEEDS_QR, timeout_s=60)
    restarts = await hub.store.restarts_since(iid, 0)
    assert len(restarts) == 2  # the operator's, and one that discarded the stale session
    assert hub.instances[iid].state == State.NEEDS_QR


async def test_unreachable_whatsapp_is_last_error_within_seconds(hubs: HubMaker,
                                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(CONNECT_ERROR_ENV, "dial tcp: lookup web.whatsapp.com: no such host")
    hub = await hubs(restart_backoff_ms=60_000)
    rt = await hub.create_instance("shop", None, None)
    await until(lambda: rt.last_error is not None, timeout_s=15)
    assert "dns" in rt.last_error
    assert rt.state == State.DISCONNECTED
    assert rt.supervisor.failures == 1
