"""The FastAPI application: routes, error mapping, body limit, request ids, HTTP metrics."""

from __future__ import annotations

import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager

import structlog
from fastapi import FastAPI, Request, Response

from wahub import __version__
from wahub.api import errors, native, sandbox, waapi
from wahub.runtime.hub import Hub

log = structlog.get_logger("wahub.http")


def create_app(hub: Hub, *, manage_hub: bool = True) -> FastAPI:
    """The ASGI app serving ``hub``; with ``manage_hub`` the app starts and stops it."""

    @asynccontextmanager
    async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
        if manage_hub:
            await hub.start()
        try:
            yield
        finally:
            if manage_hub:
                await hub.stop()

    app = FastAPI(title="wa-hub", version=__version__, lifespan=lifespan,
                  description="Self-hosted WhatsApp gateway: WaAPI-compatible API, durable outbox, "
                              "signed webhooks. Authenticate with `Authorization: Bearer <API_KEY>`.")
    app.state.hub = hub
    errors.install(app)
    app.include_router(native.public)
    app.include_router(waapi.router)
    app.include_router(native.router)
    app.include_router(sandbox.router)
    try:
        from wahub.dashboard import routes as dashboard_routes

        app.include_router(dashboard_routes.router)
        dashboard_routes.mount_static(app)
    except ImportError:  # pragma: no cover - dashboard is part of the package
        pass

    @app.middleware("http")
    async def guard(request: Request, call_next: Callable[[Request], Awaitable[Response]]) -> Response:
        request_id = request.headers.get("x-request-id") or uuid.uuid4().hex[:16]
        structlog.contextvars.bind_contextvars(request_id=request_id)
        started = time.perf_counter()
        try:
            length = request.headers.get("content-length")
            if length is not None and length.isdigit() and int(length) > hub.settings.max_body_bytes:
                response: Response = errors.error_response(
                    413, f"request body larger than MAX_BODY_BYTES={hub.settings.max_body_bytes}")
            else:
                response = await call_next(request)
        finally:
            structlog.contextvars.unbind_contextvars("request_id")
        elapsed = time.perf_counter() - started
        route = _route_template(request)
        hub.metrics.http_requests.labels(request.method, route, str(response.status_code)).inc()
        hub.metrics.http_latency.labels(request.method, route).observe(elapsed)
        response.headers["x-request-id"] = request_id
        return response

    return app


def _route_template(request: Request) -> str:
    """The template of the route that served the request (``/instances/{instance_id}``), never the raw path.

    Read after the request ran: the router records the matched route in the scope (FastAPI resolves
    included routers lazily, so matching against ``app.router.routes`` beforehand finds nothing).
    """
    route = request.scope.get("route")
    path = getattr(route, "path", None)
    return path if isinstance(path, str) and path else "unmatched"
