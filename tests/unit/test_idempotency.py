import pytest

from wahub.domain import idempotency
from wahub.domain.errors import InvalidInput
from wahub.domain.outbox import new_queue_id


def test_fingerprint_ignores_field_order_but_not_content() -> None:
    a = idempotency.fingerprint("poll", "1@c.us", {"caption": "x", "options": ["A", "B"]})
    b = idempotency.fingerprint("poll", "1@c.us", {"options": ["A", "B"], "caption": "x"})
    c = idempotency.fingerprint("poll", "1@c.us", {"options": ["B", "A"], "caption": "x"})
    d = idempotency.fingerprint("text", "1@c.us", {"caption": "x", "options": ["A", "B"]})
    assert a == b
    assert len({a, c, d}) == 3


def test_derived_keys_slide_with_the_previous_item_not_with_clock_buckets() -> None:
    fp = idempotency.fingerprint("text", "1@c.us", {"message": "hi"})
    window_s = 600
    boundary = 1_800_000_000_000 // (window_s * 1000) * (window_s * 1000)
    first = idempotency.derived_key("inst", fp, None, boundary - 1_500, window_s)
    # 1.5 s after a 600 s boundary: still the same item (a bucketed key would change here)
    assert idempotency.derived_key("inst", fp, (first, boundary - 1_500), boundary + 1_500, window_s) == first
    later = idempotency.derived_key("inst", fp, (first, boundary - 1_500), boundary - 1_500 + 600_000, window_s)
    assert later != first and later.startswith("auto:")
    assert idempotency.derived_key("other", fp, None, 0, window_s) != first


def test_derived_keys_depend_on_content() -> None:
    fa = idempotency.fingerprint("text", "1@c.us", {"message": "a"})
    fb = idempotency.fingerprint("text", "1@c.us", {"message": "b"})
    assert idempotency.derived_key("i", fa, None, 0, 600) != idempotency.derived_key("i", fb, None, 0, 600)


@pytest.mark.parametrize("bad", ["", "   ", "x" * 201, 5, None, "auto:abc", "a\nb"])
def test_bad_client_keys_are_refused(bad: object) -> None:
    with pytest.raises(InvalidInput) as err:
        idempotency.validate_key(bad, field="idempotencyKey")
    assert "idempotencyKey" in str(err.value)


def test_client_keys_are_trimmed() -> None:
    assert idempotency.validate_key("  order:s:1:confirmPoll:v1 ", field="k") == "order:s:1:confirmPoll:v1"


def test_queue_ids_are_32_hex_characters_that_sort_by_enqueue_time_and_never_repeat() -> None:
    # ordered ids keep a batch's new rows on the last page of the unique queue_id index (migration 0011)
    ids = [new_queue_id(1_800_000_000_000 + ms) for ms in range(0, 2_000, 7) for _ in range(3)]
    assert all(len(i) == 32 and int(i, 16) >= 0 for i in ids)
    assert len(set(ids)) == len(ids)
    by_time = [i[:12] for i in ids]
    assert by_time == sorted(by_time)
    assert int(ids[0][:12], 16) == 1_800_000_000_000
