"""The API's part of the web app: error mapping, interactive docs, the routers and the OpenAPI document."""

from __future__ import annotations

from pathlib import Path

from fastapi import FastAPI
from fastapi.openapi.docs import get_swagger_ui_html
from fastapi.responses import HTMLResponse
from fastapi.staticfiles import StaticFiles

from wahub.api import cloud as cloud_api
from wahub.api import errors, legacy, native, nodes, openapi, readactions, sandbox, sendactions, waapi, webhookdocs
from wahub.runtime.hub import Hub

DESCRIPTION = ("Self-hosted WhatsApp gateway: WaAPI-compatible API, durable outbox, signed webhooks. "
               "Authenticate with `Authorization: Bearer <API_KEY>` or `X-API-Key: <API_KEY>` (Authorize). "
               "Every refusal is `{\"error\": message, \"status\": code}`.")


def install(app: FastAPI, hub: Hub) -> None:
    """Add the API to ``app``: error handlers, ``/docs``, every router and the OpenAPI document."""
    errors.install(app)
    _install_docs(app)
    app.include_router(native.public)
    app.include_router(waapi.router)
    app.include_router(sendactions.router)
    app.include_router(readactions.router)
    app.include_router(legacy.router)
    app.include_router(native.router)
    app.include_router(nodes.router)
    app.include_router(sandbox.router)
    webhookdocs.install(app)
    metrics_need_key = hub.settings.metrics_require_auth and hub.settings.api_key is not None
    app.openapi = lambda: openapi.document(  # type: ignore[method-assign]
        app, metrics_need_key=metrics_need_key, waapi_envelope=hub.settings.waapi_envelope)
    app.include_router(cloud_api.router(hub.cloud_webhooks, max_body_bytes=hub.settings.cloud_webhook_max_bytes))


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
