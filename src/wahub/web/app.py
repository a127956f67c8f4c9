"""The one web application: the API and the dashboard side by side, behind one guard.

Neither part imports the other; both share only :mod:`wahub.edge` (the API key, the failed-key
brake, presenters). ``GET /`` leads the operator to the dashboard.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from fastapi import FastAPI
from fastapi.responses import RedirectResponse
from starlette.types import ASGIApp, Receive, Scope, Send

from wahub import __version__
from wahub.api import app as api
from wahub.api import fastsend, waapi
from wahub.api.fastsend import ROUTES as FAST_ROUTES
from wahub.api.fastsend import FastEnqueue
from wahub.dashboard import routes as dashboard
from wahub.domain.brake import FailureBrake
from wahub.edge.auth import GUARDED
from wahub.observability import flush_logs
from wahub.runtime.hub import Hub
from wahub.web.guard import Guard

TELEMETRY_RECHECK_S = 1.0


class WebApp(FastAPI):
    """FastAPI with the enqueue hot path in front of its own middleware stack.

    Why: a ``send-message`` answered by :class:`~wahub.api.fastsend.FastEnqueue` still passed through
    FastAPI's call (its telemetry check), Starlette's, the server-error, exception-telemetry and
    body-limit middlewares, each a coroutine frame and some a ``send`` wrapper, for no work on this
    path. With :attr:`front` set, those two routes go straight to it: the :class:`Guard` (key, body
    limit, request id, metrics, and the 500 answer the server-error middleware would give), then the
    fast enqueue. What the skipped layers do is not needed there: FastAPI's native telemetry (when an
    OpenTelemetry provider is configured the request takes the whole stack), a FastAPI body limit (not
    set; the guard enforces ``MAX_BODY_BYTES``), exception handlers (the fast path answers each refusal
    itself). A body the fast path declines goes on through the whole stack, marked as guarded.
    """

    front: ASGIApp | None = None
    _telemetry_cached = True
    _telemetry_asked_at = -TELEMETRY_RECHECK_S

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if (self.front is not None and scope["type"] == "http" and fastsend.matches(scope) and not self.root_path
                and self.max_body_size is None and not self._telemetry_on()):
            scope["app"] = self
            await self.front(scope, receive, send)
            return
        await super().__call__(scope, receive, send)

    async def behind_guard(self, scope: Scope, receive: Receive, send: Send) -> None:
        """The whole stack for a request :attr:`front` has guarded (its guard and fast path pass it on)."""
        scope[GUARDED] = True
        await super().__call__(scope, receive, send)

    def _telemetry_on(self) -> bool:
        """Whether FastAPI's native telemetry is on, asked at most every :data:`TELEMETRY_RECHECK_S`.

        Asking costs three provider look-ups (each reading ``os.environ``), a tenth of the fast path's
        own work; OpenTelemetry providers are set once, at start-up, so a provider set later reaches
        this path within a second.
        """
        now = time.monotonic()
        if now - self._telemetry_asked_at >= TELEMETRY_RECHECK_S:
            telemetry = getattr(self, "_native_telemetry", None)
            self._telemetry_cached = telemetry is None or bool(telemetry.enabled())
            self._telemetry_asked_at = now
        return self._telemetry_cached


def fastsend_routes() -> dict[str, Any]:
    """The FastAPI routes :class:`FastEnqueue` stands for, by action suffix (their templates label the metrics)."""
    routes: dict[str, Any] = {}
    for route in waapi.router.routes:
        for suffix in FAST_ROUTES:
            if getattr(route, "path", "").endswith(suffix):
                routes[suffix] = route
    assert set(routes) == set(FAST_ROUTES), "a fast enqueue route has no FastAPI route"
    return routes


def create_app(hub: Hub, *, manage_hub: bool = True, fast_enqueue: bool = True) -> FastAPI:
    """The ASGI app serving ``hub``; with ``manage_hub`` the app starts and stops it.

    ``fast_enqueue`` (the default) answers ``send-message`` and ``create-poll`` in
    :class:`~wahub.api.fastsend.FastEnqueue`, ahead of FastAPI's router, with the same answers.
    """

    @asynccontextmanager
    async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
        if manage_hub:
            await hub.start()
        try:
            yield
        finally:
            if manage_hub:
                await hub.stop()
            flush_logs()  # uvicorn may end the process by re-raising SIGTERM: no later turn, no atexit

    app = WebApp(title="wa-hub", version=__version__, lifespan=lifespan, docs_url=None, redoc_url=None,
                  description=api.DESCRIPTION)
    app.state.hub = hub
    app.state.brake = FailureBrake()  # failed API keys and dashboard logins, per client address
    api.install(app, hub)
    app.include_router(dashboard.router)
    dashboard.mount_static(app)
    app.add_api_route("/", lambda: RedirectResponse("/dashboard"), include_in_schema=False)  # the operator's start
    if fast_enqueue:  # inside the guard: the key, the body limit and the request id come first
        routes = fastsend_routes()
        app.add_middleware(FastEnqueue, hub=hub, routes=routes)  # the path while telemetry is on
        app.front = Guard(FastEnqueue(app.behind_guard, hub, routes), hub, app.state.brake)
    app.add_middleware(Guard, hub=hub, brake=app.state.brake)
    return app
