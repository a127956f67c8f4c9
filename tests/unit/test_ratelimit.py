from hypothesis import given, settings
from hypothesis import strategies as st

from wahub.domain import backoff, ratelimit
from wahub.domain.ratelimit import Limits

L = Limits(per_minute=6, per_hour=60, interval_ms=500)


def test_empty_history_allows_now() -> None:
    assert ratelimit.next_allowed([], 1_000_000, L) == ratelimit.Decision(1_000_000, "now")


def test_interval_after_last_send() -> None:
    d = ratelimit.next_allowed([1_000_000], 1_000_100, L)
    assert d == ratelimit.Decision(1_000_500, "interval")


def test_jitter_extends_only_the_interval() -> None:
    assert ratelimit.next_allowed([1_000_000], 1_000_100, L, jitter_ms=250).at_ms == 1_000_750


def test_minute_window_defers_to_the_sixth_most_recent_plus_60s() -> None:
    sends = [0, 1000, 2000, 3000, 4000, 5000]
    d = ratelimit.next_allowed(sends, 6000, L)
    assert d == ratelimit.Decision(60_000, "minute_limit")
    # at exactly 60 000 ms the first send has left the rolling minute
    assert ratelimit.next_allowed(sends, 60_000, L).at_ms == 60_000


def test_hour_window() -> None:
    lim = Limits(per_minute=100, per_hour=3, interval_ms=0)
    d = ratelimit.next_allowed([10, 20, 30], 40, lim)
    assert d == ratelimit.Decision(3_600_010, "hour_limit")


def test_sends_older_than_an_hour_do_not_count() -> None:
    lim = Limits(per_minute=1, per_hour=1, interval_ms=0)
    assert ratelimit.next_allowed([0], 3_600_000, lim).at_ms == 3_600_000


def test_clock_going_backwards_cannot_stall_more_than_a_window() -> None:
    # a send recorded "in the future" (wall clock jumped back) is treated as now
    d = ratelimit.next_allowed([10_000_000], 1_000, L)
    assert d.at_ms == 1_500


def test_usage_counts_rolling_windows() -> None:
    assert ratelimit.usage([0, 30_000, 59_999, 60_000], 60_000) == (3, 4)


def test_max_in_any_window() -> None:
    assert ratelimit.max_in_any_window([0, 10, 59_999, 60_000, 60_001], 60_000) == 4  # 10..60_001
    assert ratelimit.max_in_any_window([0, 60_000, 120_000], 60_000) == 1


@settings(max_examples=200, deadline=None)
@given(st.lists(st.integers(min_value=0, max_value=500), min_size=1, max_size=80),
       st.integers(1, 8), st.integers(1, 30), st.integers(0, 3000))
def test_scheduling_by_next_allowed_never_breaks_a_limit(gaps: list[int], per_min: int, per_hour: int,
                                                         interval: int) -> None:
    lim = Limits(per_minute=per_min, per_hour=max(per_hour, per_min), interval_ms=interval)
    now = 0
    sent: list[int] = []
    for gap in gaps:  # an item arrives `gap` seconds later and is sent at the earliest allowed time
        now += gap * 1000
        at = ratelimit.next_allowed(sent, now, lim).at_ms
        assert at >= now
        sent.append(at)
        now = at
    assert ratelimit.max_in_any_window(sent, 60_000) <= lim.per_minute
    assert ratelimit.max_in_any_window(sent, 3_600_000) <= lim.per_hour
    assert all(b - a >= interval for a, b in zip(sent, sent[1:], strict=False))


def test_backoff_grows_with_jitter_and_is_capped() -> None:
    assert backoff.exponential(1, 5000, 120_000, 0.0) == 2500
    assert backoff.exponential(1, 5000, 120_000, 0.999) < 5000
    assert backoff.exponential(3, 5000, 120_000, 0.0) == 10_000
    assert backoff.exponential(20, 5000, 120_000, 0.5) == 90_000
