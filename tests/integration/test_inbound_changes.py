"""Reactions, edits and deletes as the engine reports them, again after a reconnect: one webhook per change."""

from __future__ import annotations

import json

from tests.conftest import HubClient
from tests.integration.webhook_helpers import create, deliveries, link
from wahub.engines import base as eng

CUSTOMER = "201000000001@c.us"
T0 = 1_767_225_600_000


async def test_each_reaction_edit_and_delete_is_stored_once_and_our_own_never(hub_client: HubClient) -> None:
    hc = hub_client
    iid = await create(hc, "changes", "http://127.0.0.1:9/hook")
    await link(hc, iid)
    rt = hc.hub.get(iid)
    events: list[eng.EngineEvent] = [
        eng.Reaction("3EB0R1", "3EB0ORDER", CUSTOMER, CUSTOMER, "👍", T0),
        eng.Reaction("3EB0R1", "3EB0ORDER", CUSTOMER, CUSTOMER, "👍", T0),  # redelivered after a reconnect
        eng.Reaction("3EB0R2", "3EB0ORDER", CUSTOMER, CUSTOMER, "", T0 + 1),  # taken back: a new change
        eng.MessageEdit("3EB0ORIG", CUSTOMER, CUSTOMER, "actually CANCEL", T0 + 2),
        eng.MessageEdit("3EB0ORIG", CUSTOMER, CUSTOMER, "actually CANCEL", T0 + 2),  # redelivered
        eng.MessageEdit("3EB0ORIG", CUSTOMER, CUSTOMER, "no, CONFIRM", T0 + 2),  # a second edit, same ms
        eng.MessageRevoke("3EB0ORIG", CUSTOMER, CUSTOMER, T0 + 3),
        eng.MessageRevoke("3EB0ORIG", CUSTOMER, CUSTOMER, T0 + 4),  # the same delete again
        eng.Reaction("3EB0R3", "3EB0IN", CUSTOMER, "201000000099@c.us", "❤️", T0 + 5, from_me=True),  # ours
        eng.MessageRevoke("3EB0MINE", CUSTOMER, "201000000099@c.us", T0 + 6, from_me=True),  # ours
    ]
    for ev in events:
        assert await hc.hub.inbound.on_event(rt, ev) is True
    stored = [(d["event"], d["eventId"]) for d in await deliveries(hc, iid)
              if d["event"].startswith("message_")]
    assert [name for name, _ in stored] == ["message_reaction", "message_reaction", "message_edit", "message_edit",
                                            "message_revoke"]
    bodies = [json.loads(e.body) for e in await hc.hub.list_events(iid, limit=50) if e.event == "message_edit"]
    assert sorted(b["data"]["newBody"] for b in bodies) == ["actually CANCEL", "no, CONFIRM"]
