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


def test_only_a_strictly_newer_vote_supersedes_the_persons_stored_votes() -> None:
    assert votes.supersedes(200, []) is True  # first vote
    assert votes.supersedes(200, [100]) is True
    assert votes.supersedes(200, [200]) is False  # a copy
    assert votes.supersedes(150, [100, 200]) is False  # newer than one id's vote, older than the other's
    assert votes.supersedes(250, [100, 200]) is True


def test_a_persons_ids_and_the_lid_phone_pair() -> None:
    lid, phone = "99887766554433@lid", "201000000002@c.us"
    assert votes.person_ids(phone, None) == (phone,)
    assert votes.person_ids(phone, phone) == (phone,)
    assert votes.person_ids(lid, phone) == (lid, phone)
    assert votes.lid_and_phone(lid, phone) == (lid, phone)
    assert votes.lid_and_phone(phone, lid) == (lid, phone)
    assert votes.lid_and_phone(phone, None) is None
    assert votes.lid_and_phone("120363000000000001@g.us", lid) is None  # a group is nobody's other id
    assert votes.lid_and_phone(phone, "201000000003@c.us") is None
