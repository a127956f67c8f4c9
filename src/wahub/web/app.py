"""The one web application: the API and the dashboard side by side, behind one guard.

Neither part imports the other; both share only :mod:`wahub.edge` (the API key, the failed-key
brake, presenters). ``GET /`` leads the operator to the dashboard.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI
from fastapi.responses import RedirectResponse

from wahub import __version__
from wahub.api import app as api
from wahub.dashboard import routes as dashboard
from wahub.domain.brake import FailureBrake
from wahub.runtime.hub import Hub
from wahub.web.guard import Guard


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
                  description=api.DESCRIPTION)
    app.state.hub = hub
    app.state.brake = FailureBrake()  # failed API keys and dashboard logins, per client address
    api.install(app, hub)
    app.include_router(dashboard.router)
    dashboard.mount_static(app)
    app.add_api_route("/", lambda: RedirectResponse("/dashboard"), include_in_schema=False)  # the operator's start
    app.add_middleware(Guard, hub=hub, brake=app.state.brake)
    return app
