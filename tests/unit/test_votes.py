"""Vote-hash resolution: whatsmeow reports selected options as SHA-256 hashes of their text."""

from __future__ import annotations

import hashlib

from wahub.domain import votes


def test_hashes_resolve_to_the_stored_options_in_vote_order() -> None:
    options = ["Confirm ✅", "Cancel"]
    hashes = [hashlib.sha256(b"Cancel").hexdigest().upper(), votes.option_hash("Confirm ✅"), "ab" * 32]
    selected, unresolved = votes.resolve(hashes, options)
    assert selected == ["Cancel", "Confirm ✅"]
    assert unresolved == ["ab" * 32]
