"""A stored webhook URL that no HTTP client can dial (written before URLs were checked this strictly)."""

from __future__ import annotations

from tests.support.fakehub import build


async def test_a_stored_webhook_url_no_client_can_dial_fails_its_attempts_and_never_jams_the_lane() -> None:
    fh = build(None, webhook_max_attempts=2, webhook_retry_base_ms=100)
    await fh.hub.start(restore=False)
    rt = await fh.hub.create_instance("shop", "http://127.0.0.1:9/hook", [])
    # written before URLs were checked this strictly: the store still holds it
    await fh.hub.store.update_instance(rt.id, webhook_url="http://1.2.3.999/h")
    rt.record = await fh.hub.store.get_instance(rt.id)  # type: ignore[assignment]
    await fh.hub.events.emit(rt.record, "message", {"body": "hello"})
    for _ in range(50):
        await fh.advance(100)
    events = await fh.hub.list_events(rt.id, limit=10)
    assert [e.status for e in events if e.event == "message"] == ["dead"], events
    assert "InvalidURL" in (events[0].last_error or "")
    await fh.hub.stop()
