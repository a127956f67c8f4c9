"""``GET /nodes``: the hub nodes serving this database and the instances each runs."""

from __future__ import annotations

from fastapi import APIRouter, Depends, Request
from fastapi.responses import JSONResponse

from wahub.api.auth import require_key
from wahub.api.waapi import hub_of, ok

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
