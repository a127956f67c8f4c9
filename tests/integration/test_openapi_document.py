"""The OpenAPI document tells the truth a user acts on: how to authenticate, what each route answers,
the real error shape under every code, and request examples the server accepts as they are."""

from __future__ import annotations

from typing import Any

import pytest

from tests.conftest import HubClient
from wahub.api import openapi

pytestmark = pytest.mark.timeout(60)


async def _spec(hc: HubClient) -> dict[str, Any]:
    r = await hc.client.get("/openapi.json")
    assert r.status_code == 200
    spec: dict[str, Any] = r.json()
    return spec


async def test_both_ways_to_present_the_key_are_declared_and_required_where_the_server_requires_them(
        hub_client: HubClient) -> None:
    spec = await _spec(hub_client)
    schemes = spec["components"]["securitySchemes"]
    assert schemes["bearer"] == {"type": "http", "scheme": "bearer", "description": schemes["bearer"]["description"]}
    assert (schemes["apiKey"]["in"], schemes["apiKey"]["name"]) == ("header", "X-API-Key")
    for path, ops in spec["paths"].items():
        for method, op in ops.items():
            security = op.get("security", spec["security"])
            public = (method, path) in openapi.PUBLIC
            assert (security == []) == public, (method, path, security)
            if not public:  # the server refuses the operation without a key: so does the document
                r = await hub_client.client.request(method.upper(), path.replace("{instance_id}", "x"),
                                                    headers={"authorization": ""})
                assert r.status_code == 401, (method, path, r.status_code)


async def test_every_operation_documents_its_answer_and_the_real_error_shape_and_no_422(
        hub_client: HubClient) -> None:
    spec = await _spec(hub_client)
    assert "HTTPValidationError" not in spec["components"]["schemas"]
    error = spec["components"]["schemas"]["ErrorBody"]
    assert error["required"] == ["error", "status"]
    for path, ops in spec["paths"].items():
        for method, op in ops.items():
            codes = set(op["responses"])
            assert codes & {"200", "202"}, (method, path)
            # no FastAPI validation 422: a 422 is only ours (Unprocessable, an ErrorBody), where ROUTES lists it
            assert "422" not in codes or 422 in openapi.ROUTES[(method, path)].errors, (method, path)
            for code in codes - {"200", "202"}:
                if (method, path) == ("get", "/ready") and code == "503":
                    continue
                schema = op["responses"][code]["content"]["application/json"]["schema"]
                assert schema == {"$ref": "#/components/schemas/ErrorBody"}, (method, path, code)
            if (method, path) not in openapi.PUBLIC and path != "/metrics":
                assert {"401", "403", "429", "503"} <= codes, (method, path)
    metrics = spec["paths"]["/metrics"]["get"]["responses"]["200"]["content"]
    assert list(metrics) == [next(iter(metrics))] and next(iter(metrics)).startswith("text/plain")
    routes = {(m, p) for p, ops in spec["paths"].items() for m in ops}
    assert routes <= set(openapi.ROUTES), routes - set(openapi.ROUTES)  # a new route must say what it answers


async def test_request_bodies_are_typed_with_their_required_fields_and_no_placeholders(hub_client: HubClient) -> None:
    spec = await _spec(hub_client)
    schemas = spec["components"]["schemas"]
    send = schemas["SendMessage"]
    assert send["required"] == ["chatId", "message"]
    assert send["properties"]["retry"]["type"] == ["boolean", "null"]
    assert schemas["CreateInstance"]["required"] == ["name"]
    for name in ("SendMessage", "CreatePoll", "CreateInstance", "UpdateInstance", "WebhookConfig", "Restart"):
        assert "additionalProperties" not in schemas[name], name  # Swagger would show "additionalProp1"
        for field, prop in schemas[name]["properties"].items():
            assert prop.get("type") or prop.get("anyOf") or prop.get("$ref"), (name, field)  # never an untyped "any"


async def test_the_documented_request_examples_are_accepted_as_they_are(hub_client: HubClient) -> None:
    hc = hub_client
    spec = await _spec(hc)
    schemas = spec["components"]["schemas"]
    create = schemas["CreateInstance"]["examples"][0]
    r = await hc.client.post("/instances", json=create)
    assert r.status_code == 200, r.text
    iid = r.json()["instance"]["id"]
    for path, name, ok in (("send-message", "SendMessage", 202), ("create-poll", "CreatePoll", 202)):
        r = await hc.client.post(f"/instances/{iid}/client/action/{path}", json=schemas[name]["examples"][0])
        assert r.status_code == ok, r.text
    r = await hc.client.put(f"/instances/{iid}", json=schemas["UpdateInstance"]["examples"][0])
    assert r.status_code == 200, r.text
    r = await hc.client.post(f"/instances/{iid}/restart", json=schemas["Restart"]["examples"][0])
    assert r.status_code == 200, r.text


@pytest.mark.hub_settings(waapi_envelope=True)
async def test_with_the_waapi_envelope_the_sends_are_documented_under_data(hub_client: HubClient) -> None:
    spec = await _spec(hub_client)
    send = spec["paths"]["/instances/{instance_id}/client/action/send-message"]["post"]["responses"]
    assert send["202"]["content"]["application/json"]["schema"] == {"$ref": "#/components/schemas/EnqueuedEnvelope"}
