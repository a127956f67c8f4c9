"""The FastAPI application: routes, error mapping, body limit, request ids, HTTP metrics."""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import structlog
from fastapi import FastAPI
from fastapi.openapi.docs import get_swagger_ui_html
from fastapi.responses import HTMLResponse, RedirectResponse
from fastapi.staticfiles import StaticFiles
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from wahub import __version__
from wahub.api import auth, brakes, errors, legacy, native, sandbox, waapi
from wahub.api import cloud as cloud_api
from wahub.domain.brake import FailureBrake
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

    app = FastAPI(title="wa-hub", version=__version__, lifespan=lifespan, docs_url=None, redoc_url=None,
                  description="Self-hosted WhatsApp gateway: WaAPI-compatible API, durable outbox, "
                              "signed webhooks. Authenticate with `Authorization: Bearer <API_KEY>`.")
    app.state.hub = hub
    app.state.brake = FailureBrake()  # failed API keys and dashboard logins, per client address
    errors.install(app)
    _install_docs(app)
    app.include_router(native.public)
    app.include_router(waapi.router)
    app.include_router(legacy.router)
    app.include_router(native.router)
    app.include_router(sandbox.router)
    app.include_router(cloud_api.router(hub.cloud_webhooks, max_body_bytes=hub.settings.cloud_webhook_max_bytes))
    try:
        from wahub.dashboard import routes as dashboard_routes

        app.include_router(dashboard_routes.router)
        dashboard_routes.mount_static(app)
    except ImportError:  # pragma: no cover - dashboard is part of the package
        pass

    app.add_api_route("/", lambda: RedirectResponse("/dashboard"), include_in_schema=False)  # the operator's start
    app.add_middleware(Guard, hub=hub, brake=app.state.brake)
    return app


SWAGGER = Path(__file__).parent / "static" / "swagger"


def _install_docs(app: FastAPI) -> None:
    """Interactive docs at ``/docs`` from swagger-ui-dist 5.35.0 shipped in the package (no CDN)."""
    app.mount("/docs/static", StaticFiles(directory=SWAGGER), name="docs-static")

    @app.get("/docs", include_in_schema=False)
    async def docs() -> HTMLResponse:
        return get_swagger_ui_html(openapi_url=app.openapi_url or "/openapi.json", title="wa-hub API",
                                   swagger_js_url="/docs/static/swagger-ui-bundle.js",
                                   swagger_css_url="/docs/static/swagger-ui.css",
                                   swagger_favicon_url="/docs/static/favicon-32x32.png",
                                   swagger_ui_parameters={"validatorUrl": None})  # no call to swagger.io


class Guard:
    """Plain ASGI middleware (no per-request task group): request ids, body limit, HTTP metrics.

    * The API key is checked here, before any of the body is read (401 none, 403 wrong), except on the public
      paths of :data:`wahub.api.auth.PUBLIC_PREFIXES`; the routes check it again.
    * ``x-request-id``: taken from the request or made up, bound to every log line of the request
      and echoed in the response.
    * Bodies over ``MAX_BODY_BYTES`` get 413, by ``content-length`` or, for chunked bodies, by
      counting what arrives before the app sees any of it.
    * ``wahub_http_requests_total`` / ``wahub_http_request_seconds`` by method and route template.
    """

    def __init__(self, app: ASGIApp, hub: Hub, brake: FailureBrake | None = None) -> None:
        self.app = app
        self.hub = hub
        self.brake = brake or FailureBrake()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = dict(scope["headers"])
        request_id = headers.get(b"x-request-id", b"").decode("latin-1")[:64] or uuid.uuid4().hex[:16]
        limit = self.hub.settings.max_body_bytes
        if scope.get("path", "").startswith("/cloud/"):  # Meta's webhook calls: the route caps them itself
            limit = max(limit, self.hub.settings.cloud_webhook_max_bytes)
        started = time.perf_counter()
        status = [500]
        length = headers.get(b"content-length")
        too_big = length is not None and length.isdigit() and int(length) > limit
        refused = None if auth.is_public(scope.get("path", "")) else auth.refusal(
            self.hub.settings.api_key, auth.key_from_headers(headers))
        wait_s = 0 if refused is None and auth.is_public(scope.get("path", "")) or refused == auth.MISSING else \
            brakes.braked(self.brake, scope, refused, self.hub.clock.now_ms())
        if refused is None and not too_big and length is None and b"chunked" in headers.get(b"transfer-encoding",
                                                                                              b""):
            body, too_big = await _read_capped(receive, limit)
            receive = _replay(body)

        async def send_with_id(message: Message) -> None:
            if message["type"] == "http.response.start":
                status[0] = message["status"]
                message.setdefault("headers", [])
                message["headers"] = [*message["headers"], (b"x-request-id", request_id.encode("latin-1"))]
            await send(message)

        structlog.contextvars.bind_contextvars(request_id=request_id)
        try:
            if wait_s:  # too many wrong keys from this client: not even compared
                await _json(send_with_id, 429, errors.error_body(429, brakes.BRAKED), retry_after_s=wait_s)
            elif refused is not None:  # before a single byte of the body is read
                code = auth.refusal_status(refused)
                await _json(send_with_id, code, errors.error_body(code, refused))
            elif too_big:
                await _json(send_with_id, 413, errors.error_body(
                    413, f"request body larger than MAX_BODY_BYTES={limit}"))
            else:
                await self.app(scope, receive, send_with_id)
        finally:
            structlog.contextvars.unbind_contextvars("request_id")
            route = _route_template(scope)
            method = scope.get("method", "GET")
            self.hub.metrics.http_requests.labels(method, route, str(status[0])).inc()
            self.hub.metrics.http_latency.labels(method, route).observe(time.perf_counter() - started)


async def _read_capped(receive: Receive, limit: int) -> tuple[bytes, bool]:
    chunks: list[bytes] = []
    size = 0
    while True:
        message = await receive()
        if message["type"] != "http.request":
            return b"".join(chunks), False
        chunk = message.get("body", b"")
        size += len(chunk)
        if size > limit:
            return b"", True
        chunks.append(chunk)
        if not message.get("more_body"):
            return b"".join(chunks), False


def _replay(body: bytes) -> Receive:
    sent = [False]

    async def receive() -> Message:
        if sent[0]:
            return {"type": "http.disconnect"}
        sent[0] = True
        return {"type": "http.request", "body": body, "more_body": False}

    return receive


async def _json(send: Send, status: int, payload: dict[str, Any], retry_after_s: int = 0) -> None:
    body = json.dumps(payload).encode()
    headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
    if retry_after_s:
        headers.append((b"retry-after", str(retry_after_s).encode()))
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


def _route_template(scope: Scope) -> str:
    """The template of the route that served the request (``/instances/{instance_id}``), never the raw path.

    Read after the request ran: the router records the matched route in the scope (FastAPI resolves
    included routers lazily, so matching against ``app.router.routes`` beforehand finds nothing).
    """
    route = scope.get("route")
    path = getattr(route, "path", None)
    return path if isinstance(path, str) and path else "unmatched"
