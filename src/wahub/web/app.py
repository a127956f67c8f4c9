"""The one web application: the API and the dashboard side by side, behind one guard.

Neither part imports the other; both share only :mod:`wahub.edge` (the API key, the failed-key
brake, presenters). ``GET /`` leads the operator to the dashboard.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from fastapi import FastAPI
from fastapi.responses import RedirectResponse

from wahub import __version__
from wahub.api import app as api
from wahub.api import waapi
from wahub.api.fastsend import ROUTES as FAST_ROUTES
from wahub.api.fastsend import FastEnqueue
from wahub.dashboard import routes as dashboard
from wahub.domain.brake import FailureBrake
from wahub.runtime.hub import Hub
from wahub.web.guard import Guard


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

    app = FastAPI(title="wa-hub", version=__version__, lifespan=lifespan, docs_url=None, redoc_url=None,
                  description=api.DESCRIPTION)
    app.state.hub = hub
    app.state.brake = FailureBrake()  # failed API keys and dashboard logins, per client address
    api.install(app, hub)
    app.include_router(dashboard.router)
    dashboard.mount_static(app)
    app.add_api_route("/", lambda: RedirectResponse("/dashboard"), include_in_schema=False)  # the operator's start
    if fast_enqueue:  # inside the guard: the key, the body limit and the request id come first
        app.add_middleware(FastEnqueue, hub=hub, routes=fastsend_routes())
    app.add_middleware(Guard, hub=hub, brake=app.state.brake)
    return app
