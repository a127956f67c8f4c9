"""A burst of 20 images obeys the same rate windows and pacing as text, on the sandbox's own stamps."""

from __future__ import annotations

import base64

from tests.support.fakehub import HOOK_URL, build
from wahub.domain import ratelimit
from wahub.domain.outbox import ItemKind, ItemStatus

SEC = 1000
MIN = 60 * SEC
PNG = base64.b64encode(b"\x89PNG\r\n\x1a\n" + b"\x00" * 64).decode()


async def test_twenty_images_keep_the_minute_window_and_the_interval_mixed_with_text() -> None:
    fh = build(None, max_sends_per_minute=6, max_sends_per_hour=60, send_interval_ms=2_000)
    await fh.hub.start(restore=False)
    rt = await fh.hub.create_instance("media-shop", HOOK_URL, [])
    await fh.link(rt.id)
    for i in range(20):
        await fh.hub.send_actions.enqueue(rt.id, ItemKind.MEDIA, {
            "chatId": f"20100000{i:04d}", "mediaBase64": PNG, "mediaCaption": f"parcel {i}"},
            header_key=f"photo:{i}")
        if i % 5 == 0:  # text between the images shares the same windows
            await fh.hub.outbox.enqueue(rt.id, ItemKind.TEXT, {"chatId": "201000000099", "message": f"t{i}"},
                                        header_key=f"text:{i}")
    for _ in range(5 * 60):
        await fh.advance(SEC)
    deliveries = fh.world.phones[rt.id].deliveries
    images = [d for d in deliveries if d.kind == "media"]
    assert len(images) == 20
    assert all(d.extra["mediaType"] == "image" and d.extra["mimetype"] == "image/png" for d in images)
    times = [d.at_ms for d in deliveries]
    assert ratelimit.max_in_any_window(times, MIN) <= 6, times
    gaps = [b - a for a, b in zip(times, times[1:], strict=False)]
    assert min(gaps) >= 2_000, gaps
    assert len(deliveries) == 24  # 20 images + 4 texts, each once
    for i in range(20):
        item = await fh.hub.outbox.get_item_by_key(rt.id, f"photo:{i}")
        assert item.status == ItemStatus.SENT
        assert item.sent_at in times  # the item's send instant is the sandbox's stamp


async def test_the_same_image_again_without_a_key_is_a_replay_not_a_second_send() -> None:
    fh = build(None)
    await fh.hub.start(restore=False)
    rt = await fh.hub.create_instance("media-replay", HOOK_URL, [])
    await fh.link(rt.id)
    body = {"chatId": "201000000001", "mediaBase64": PNG, "mediaCaption": "same"}
    first = await fh.hub.send_actions.enqueue(rt.id, ItemKind.MEDIA, dict(body), header_key=None)
    again = await fh.hub.send_actions.enqueue(rt.id, ItemKind.MEDIA, dict(body), header_key=None)
    assert again.replay and again.item.queue_id == first.item.queue_id
    await fh.advance(10 * SEC)
    assert len(fh.world.phones[rt.id].deliveries) == 1


def test_the_documented_item_kinds_are_the_outbox_kinds() -> None:
    from typing import get_args

    from wahub.api.answers import OutboxItem

    assert set(get_args(OutboxItem.model_fields["kind"].annotation)) == {k.value for k in ItemKind}
