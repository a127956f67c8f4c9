"""The official WaAPI SDK (PyPI ``waapi``) runs its reads, chat actions and group calls against a real
``wa-hub serve`` process on the sandbox (``WAAPI_ENVELOPE=true``): each call returns without raising.

:mod:`tests.acceptance.sdk_methods` lists every one of the SDK's 129 methods once: run here, built
with the sending actions (outbound), or out of scope with the reason.
"""

from __future__ import annotations

import inspect
from pathlib import Path
from typing import Any

import pytest
from waapi import WaAPI

from tests.acceptance import sdk_methods as m
from tests.support.server import API_KEY, Server


def test_every_sdk_method_is_run_outbound_or_out_of_scope_with_a_reason() -> None:
    methods = {n for n, v in inspect.getmembers(WaAPI) if not n.startswith("_") and callable(v)} - {"request",
                                                                                                    "close"}
    assert len(methods) == 129
    listed = list(m.RUN) + list(m.OUTBOUND) + list(m.OUT_OF_SCOPE)
    assert sorted(listed) == sorted(methods), set(listed) ^ methods  # each exactly once
    assert len(set(m.RUN)) >= 60
    assert all(reason.strip() for reason in m.OUT_OF_SCOPE.values())


def run_calls(sdk: Any, ctx: m.Ctx, calls: list[m.Call]) -> list[str]:
    """Call each SDK method with its arguments; every answer must be a success (the SDK raises otherwise)."""
    done = []
    for name, kwargs in calls:
        args = kwargs(ctx)
        answer = getattr(sdk, name)(args.pop("name"), args.pop("payload")) if name == "action" \
            else getattr(sdk, name)(**args)
        assert answer["status"] == "success", (name, answer)
        ctx.answers[name] = answer
        if name == "create_group":
            ctx.group_id = answer["data"]["groupInfo"]["id"]["_serialized"]
        if name == "action":
            ctx.invite_code = answer["data"]["invite"]["inviteCode"]
        done.append(name)
    return done


@pytest.mark.timeout(120)
def test_sdk_reads_chats_and_groups_run_against_the_sandbox(tmp_path: Path) -> None:
    with Server(tmp_path / "hub", env={"WAAPI_ENVELOPE": "true", "SEND_INTERVAL_MS": "50"}) as hub:
        c = hub.client
        boot = WaAPI(token=API_KEY, base_url=hub.url)
        iid = boot.create_instance()["instance"]["id"]
        sdk = WaAPI(token=API_KEY, instance_id=iid, base_url=hub.url)
        done = ["create_instance"]
        try:
            hub.wait_until(lambda: c.get(f"/instances/{iid}/client/qr").status_code == 200)
            assert sdk.get_qr_code()["qrCode"]["data"]["qr_code"]
            assert sdk.request_pairing_code(phone_number="201000000099")["data"]["pairingCode"]
            c.post(f"/sandbox/instances/{iid}/scan", json={"phone": "201000000099"})
            hub.wait_until(lambda: sdk.get_status()["clientStatus"]["instanceStatus"] == "ready")
            assert any(i["id"] == iid for i in sdk.get_instances()) and sdk.get_instance()["instance"]["id"] == iid
            done += ["get_qr_code", "request_pairing_code", "get_status", "get_instances", "get_instance"]

            r = c.post(f"/sandbox/instances/{iid}/messages", json={"from": m.CUSTOMER, "text": "where is my parcel?",
                                                                   "pushName": "Mona"})
            ctx = m.Ctx(message_id=r.json()["messageId"])
            sdk.send_message(chat_id=m.CUSTOMER, message="on its way")
            poll = sdk.create_poll(chat_id=m.CUSTOMER, caption="Confirm?", options=["Yes", "No"])
            hub.wait_until(lambda: len(c.get(f"/sandbox/instances/{iid}/sent").json()["messages"]) == 2)
            sent_poll = sdk.get_poll_votes(message_id=_poll_id(c, iid, poll["data"]["queueId"]))
            assert sent_poll["data"]["status"] == "success"
            done += ["send_message", "create_poll", "get_poll_votes"]

            done += run_calls(sdk, ctx, m.READS)
            msgs = ctx.answers["fetch_messages"]["data"]["messages"]
            assert [x["body"] for x in msgs][:2] == ["where is my parcel?", "on its way"]
            assert ctx.answers["get_number_id"]["data"]["numberId"]["_serialized"] == m.CUSTOMER
            assert ctx.answers["get_country_code"]["data"]["countryCode"] == "20"
            done += run_calls(sdk, ctx, m.CHAT_ACTIONS)
            assert [b["_serialized"] for b in ctx.answers["get_blocked_contacts"]["data"]["contacts"]] == [m.FRIEND]
            done += run_calls(sdk, ctx, m.GROUPS)
            info = ctx.answers["update_group_settings"]["data"]["groupInfo"]
            assert info["subject"] == "Orders today" and info["announce"] is True
            assert ctx.answers["accept_invite"]["data"]["groupId"] == ctx.group_id

            sdk.reboot()
            hub.wait_until(lambda: sdk.get_status()["clientStatus"]["instanceStatus"] == "ready")
            sdk.logout()
            sdk.delete_instance()
            assert c.get(f"/instances/{iid}").status_code == 404
            done += ["reboot", "logout", "delete_instance"]
        finally:
            sdk.close()
            boot.close()
    assert sorted(done) == sorted(m.RUN)


def _poll_id(c: Any, iid: str, queue_id: str) -> str:
    item = c.get(f"/instances/{iid}/messages/{queue_id}").json()["item"]
    return str(item["messageId"])
