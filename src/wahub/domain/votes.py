"""Poll-vote resolution: WhatsApp sends a vote as SHA-256 hashes of the chosen option names."""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Sequence


def option_hash(option: str) -> str:
    """Hex SHA-256 of an option's UTF-8 text, as whatsmeow reports selected options."""
    return hashlib.sha256(option.encode("utf-8")).hexdigest()


def resolve(hashes: Iterable[str], options: Sequence[str]) -> tuple[list[str], list[str]]:
    """Map vote hashes to option texts: ``(selected, unresolved_hashes)``, in vote order."""
    by_hash = {option_hash(o): o for o in options}
    selected: list[str] = []
    unresolved: list[str] = []
    for h in hashes:
        if h.lower() in by_hash:
            selected.append(by_hash[h.lower()])
        else:
            unresolved.append(h)
    return selected, unresolved


def supersedes(timestamp: int, stored: Iterable[int]) -> bool:
    """Whether a vote cast at ``timestamp`` (epoch ms) replaces the person's stored votes.

    ``stored`` are the timestamps of the latest votes already kept for the same person on the
    same poll, under any of their ids (phone and ``@lid``). Only a strictly newer vote counts: an
    equal timestamp is a copy, an older one a late arrival (stale).
    """
    return all(timestamp > at for at in stored)


def person_ids(voter: str, alt: str | None) -> tuple[str, ...]:
    """Every id a person votes under: ``voter`` first, then its other form when known."""
    return (voter,) if not alt or alt == voter else (voter, alt)


def lid_and_phone(a: str | None, b: str | None) -> tuple[str, str] | None:
    """``(lid, phone_jid)`` when one of two ids of a person is an ``@lid`` and the other a phone (``@c.us``)."""
    if not a or not b:
        return None
    if a.endswith("@lid") and b.endswith("@c.us"):
        return a, b
    if b.endswith("@lid") and a.endswith("@c.us"):
        return b, a
    return None
