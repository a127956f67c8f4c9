import pytest

from wahub.domain import idempotency
from wahub.domain.errors import InvalidInput


def test_fingerprint_ignores_field_order_but_not_content() -> None:
    a = idempotency.fingerprint("poll", "1@c.us", {"caption": "x", "options": ["A", "B"]})
    b = idempotency.fingerprint("poll", "1@c.us", {"options": ["A", "B"], "caption": "x"})
    c = idempotency.fingerprint("poll", "1@c.us", {"options": ["B", "A"], "caption": "x"})
    d = idempotency.fingerprint("text", "1@c.us", {"caption": "x", "options": ["A", "B"]})
    assert a == b
    assert len({a, c, d}) == 3


def test_derived_keys_collapse_within_a_window_and_differ_across_windows() -> None:
    fp = idempotency.fingerprint("text", "1@c.us", {"message": "hi"})
    window_s = 600
    start = 1_800_000_000_000 // (window_s * 1000) * (window_s * 1000)
    k1 = idempotency.derive_key("inst", fp, start + 1_000, window_s)
    k2 = idempotency.derive_key("inst", fp, start + 599_000, window_s)
    k3 = idempotency.derive_key("inst", fp, start + 600_000, window_s)
    assert k1 == k2
    assert k1 != k3
    assert k1.startswith("auto:")
    assert idempotency.derive_key("other", fp, start, window_s) != idempotency.derive_key("inst", fp, start, window_s)


def test_derived_keys_depend_on_content() -> None:
    fa = idempotency.fingerprint("text", "1@c.us", {"message": "a"})
    fb = idempotency.fingerprint("text", "1@c.us", {"message": "b"})
    assert idempotency.derive_key("i", fa, 0, 600) != idempotency.derive_key("i", fb, 0, 600)


@pytest.mark.parametrize("bad", ["", "   ", "x" * 201, 5, None, "auto:abc", "a\nb"])
def test_bad_client_keys_are_refused(bad: object) -> None:
    with pytest.raises(InvalidInput) as err:
        idempotency.validate_key(bad, field="idempotencyKey")
    assert "idempotencyKey" in str(err.value)


def test_client_keys_are_trimmed() -> None:
    assert idempotency.validate_key("  order:s:1:confirmPoll:v1 ", field="k") == "order:s:1:confirmPoll:v1"
