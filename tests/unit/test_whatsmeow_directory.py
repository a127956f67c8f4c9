"""The worker's directory on the offline fake client (no subprocess): answers and refusals by kind."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from tests.support import neonize_fixtures  # noqa: F401 - imports neonize without its leaked pipe
from wahub.engines.whatsmeow import workerdirectory as wd
from wahub.engines.whatsmeow.fakeclient import FakeClient

CUSTOMER = "201000000001@c.us"


def _linked(tmp_path: Path, phone: str = "201000000099") -> FakeClient:
    client = FakeClient(str(tmp_path / "session.db"))
    client.fake_control({"action": "scan", "phone": phone})
    return client


def _run(client: Any, action: str, **args: Any) -> dict[str, Any]:
    return wd.run(client, action, {**args, "__action": action})


def test_groups_answer_in_the_neutral_shape_and_refusals_keep_their_kind(tmp_path: Path) -> None:
    owner = _linked(tmp_path)
    group = _run(owner, "create-group", subject="Orders", participants=[CUSTOMER])["value"]
    assert group["subject"] == "Orders" and group["owner"] == "201000000099@c.us"
    assert {p["id"]: p["isSuperAdmin"] for p in group["participants"]} == {"201000000099@c.us": True,
                                                                         CUSTOMER: False}
    gid = group["id"]
    described = _run(owner, "update-group-info", group_id=gid, subject=None, description="daily",
                     picture_url=None)["value"]
    assert described["description"] == "daily"
    assert _run(owner, "update-group-info", group_id=gid, subject=None, description=None,
                picture_url="https://x.invalid/p.png")["refused"] == "unsupported"
    assert _run(owner, "get-group-info", group_id="120363999999999999@g.us")["refused"] == "not_found"
    missing = _run(owner, "demote-group-participant", group_id=gid, participant="201000000005@c.us")
    assert missing["refused"] == "refused" and "code 404" in missing["message"]
    assert _run(owner, "get-chats")["refused"] == "unsupported"
    assert set(wd.ACTIONS).isdisjoint(wd.UNSUPPORTED)


def test_number_ids_follow_whatsapps_answer(tmp_path: Path) -> None:
    client = _linked(tmp_path)
    client.fake_control({"action": "number_alias", "number": "5511987654321", "jid": "551187654321@c.us"})
    client.fake_control({"action": "unregistered", "number": "201099999999"})
    assert _run(client, "get-number-id", number="5511987654321")["value"]["jid"] == "551187654321@c.us"
    assert _run(client, "get-number-id", number="201000000001")["value"]["jid"] == CUSTOMER
    assert _run(client, "get-number-id", number="201099999999")["value"]["jid"] is None
    assert _run(client, "get-profile-pic-url", contact_id=CUSTOMER)["value"] is None  # none set
