"""Ladder, budget and auto-resume rules (DESIGN §2)."""

from __future__ import annotations

from wahub.domain import ladder
from wahub.domain.lifecycle import State


def test_the_ladder_doubles_from_soft_to_hard_and_caps() -> None:
    assert ladder.next_rung(1, 2000) == (2000, "soft")
    assert ladder.next_rung(2, 2000) == (4000, "hard")
    assert ladder.next_rung(3, 2000) == (8000, "hard")
    assert ladder.next_rung(30, 2000) == (ladder.MAX_BACKOFF_MS, "hard")


def test_budget() -> None:
    assert not ladder.over_budget([1, 2, 3], 4)
    assert ladder.over_budget([1, 2, 3, 4], 4)
    assert ladder.budget_frees_at([5, 1, 3], 600_000) == 600_001
    assert ladder.budget_frees_at([], 600_000) is None


def test_restore_and_auto_resume() -> None:
    assert ladder.may_restore(State.READY, None, 0, False)
    assert not ladder.may_restore(State.NEEDS_QR, None, 0, True)
    assert not ladder.may_restore(State.RESTRICTED, 100, 200, False)  # only a human resumes it
    assert not ladder.may_restore(State.RESTRICTED, 300, 200, True)  # ban not over yet
    assert ladder.may_restore(State.RESTRICTED, 100, 200, True)
    assert ladder.resume_at(State.RESTRICTED, 100, True) == 100
    assert ladder.resume_at(State.RESTRICTED, None, True) is None
