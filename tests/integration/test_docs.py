"""OpenAPI docs are served from the package itself: they work on a host without internet."""

from __future__ import annotations

from tests.conftest import HubClient


async def test_docs_page_and_assets_are_local(hub_client: HubClient) -> None:
    c = hub_client.client
    page = await c.get("/docs", headers={"authorization": ""})
    assert page.status_code == 200
    assert "/docs/static/swagger-ui-bundle.js" in page.text
    assert "cdn" not in page.text.lower()
    js = await c.get("/docs/static/swagger-ui-bundle.js", headers={"authorization": ""})
    assert js.status_code == 200 and len(js.content) > 100_000
    spec = (await c.get("/openapi.json", headers={"authorization": ""})).json()
    assert "/instances/{instance_id}/client/action/send-message" in spec["paths"]


async def test_openapi_describes_the_inbound_events_and_the_sandbox_injections(hub_client: HubClient) -> None:
    spec = (await hub_client.client.get("/openapi.json", headers={"authorization": ""})).json()
    assert {"message", "message_reaction", "message_edit", "message_revoke", "vote_update"} <= set(spec["webhooks"])
    schemas = spec["components"]["schemas"]
    assert {"type", "hasMedia", "mimetype", "caption", "filename", "location", "vCards", "quotedMsgId",
            "quotedMsgBody", "fromAlt"} <= set(schemas["InboundMessage"]["properties"])
    assert {"decryptFailed", "voterLid", "voterPhone"} <= set(schemas["VoteUpdateData"]["properties"])
    assert {"msgId", "reaction"} <= set(schemas["InboundReaction"]["properties"])
    for path in ("messages", "reactions", "edits", "revokes", "votes"):
        assert "requestBody" in spec["paths"][f"/sandbox/instances/{{instance_id}}/{path}"]["post"], path
