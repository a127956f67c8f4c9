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
