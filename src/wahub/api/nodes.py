"""``GET /nodes``: the hub nodes serving this database and the instances each runs."""

from __future__ import annotations

import httpx
from fastapi import APIRouter, Depends, Request
from fastapi.responses import JSONResponse, Response

from wahub.api.auth import require_key
from wahub.api.waapi import hub_of, ok
from wahub.domain.errors import Conflict

router = APIRouter(dependencies=[Depends(require_key)], tags=["native"])


@router.get("/nodes", summary="Hub nodes on this database: address, capacity, instances owned, last heartbeat")
async def list_nodes(request: Request, instances: bool = False) -> JSONResponse:
    """Every node with ``live`` (heartbeat within the lease TTL) and ``self`` (the node answering);
    ``?instances=true`` adds ``running``: the ids of the instances the answering node runs."""
    hub = hub_of(request)
    extra = {"running": hub.running()} if instances else {}
    now = hub.clock.now_ms()
    ttl_ms = int(hub.settings.node_lease_ttl_seconds * 1000)
    return ok({"node": hub.node_id, "leases": hub.placement is not None, "nodes": [
        {"id": n.id, "address": n.address, "capacity": n.capacity, "owned": n.owned,
         "lastHeartbeatAt": n.heartbeat_at, "startedAt": n.started_at, "live": n.heartbeat_at > now - ttl_ms,
         "self": n.id == hub.node_id} for n in await hub.nodes()], **extra})


FORWARDED = "x-wahub-forwarded-by"  # set on a request one node passes to another: never passed on again
FORWARD_TIMEOUT_S = 10.0


async def from_owner(request: Request, refusal: Conflict) -> Response:
    """Answer a GET for an instance another node runs with that node's own answer (QR code); raise
    ``refusal`` (409 naming the owner) when it cannot be asked: no address, not a GET, or already
    forwarded once. The caller's API key goes along; nothing else of the request does."""
    address = refusal.extra.get("ownerAddress")
    if request.method != "GET" or not isinstance(address, str) or request.headers.get(FORWARDED):
        raise refusal
    headers = {k: v for k in ("authorization", "x-api-key") if (v := request.headers.get(k))}
    headers[FORWARDED] = hub_of(request).node_id
    try:
        async with httpx.AsyncClient(timeout=FORWARD_TIMEOUT_S, follow_redirects=False) as client:
            answer = await client.get(address.rstrip("/") + request.url.path, params=request.query_params,
                                      headers=headers)
    except httpx.HTTPError:
        raise refusal from None
    return Response(answer.content, answer.status_code, media_type=answer.headers.get("content-type"))
