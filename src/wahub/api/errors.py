"""Error mapping: every refusal is JSON ``{"error": "<message>", "status": <HTTP code>, ...}``.

The existing wa-hub's error body: ``status`` is the HTTP status code as a number, so a client that
reads ``body.status`` sees the same value as the response line. Extra context fields follow.
:data:`~wahub.edge.status.STATUS` is the one place where a domain error becomes an HTTP status code; request
validation failures are 400 like every other bad input (never FastAPI's 422).
"""

from __future__ import annotations

from typing import Any

import structlog
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from wahub.domain.errors import ApiError, EngineError, StoreUnavailable
from wahub.edge.status import STATUS, status_of

__all__ = ["STATUS", "error_body", "error_response", "install", "refusal_response", "status_of", "unexpected_response"]

log = structlog.get_logger("wahub.api")


def error_response(status: int, message: str, headers: dict[str, str] | None = None, **extra: Any) -> JSONResponse:
    """A JSON error body ``{"error": message, "status": status, **extra}`` with the given HTTP status."""
    return JSONResponse(error_body(status, message, **extra), status_code=status, headers=headers)


def error_body(status: int, message: str, **extra: Any) -> dict[str, Any]:
    """The existing wa-hub's error shape; ``extra`` never overrides ``error`` or ``status``."""
    return {**extra, "error": message, "status": status}


def _describe(errors: list[Any]) -> tuple[int, str]:
    for err in errors:
        if err.get("type") == "json_invalid":
            return 400, "malformed JSON body: " + str(err.get("ctx", {}).get("error", "could not parse"))
    parts = []
    for err in errors:
        loc = [str(p) for p in err.get("loc", ()) if p not in ("body",)]
        field = ".".join(loc)
        if err.get("type") == "missing" and not loc:
            return 400, "request body is required (a JSON object)"
        if err.get("type") in ("model_attributes_type", "dict_type") and not loc:
            return 400, "request body must be a JSON object"
        parts.append(f"{field}: {err.get('msg')}" if field else str(err.get("msg")))
    return 400, "; ".join(parts) or "invalid request"


def refusal_response(exc: Exception) -> JSONResponse | None:
    """The answer to a refusal the API maps itself (ApiError, StoreUnavailable, EngineError); None for any other."""
    if isinstance(exc, ApiError):
        retry_after = getattr(exc, "retry_after_s", None)  # QueueFull (429), ShuttingDown (503)
        headers = {"Retry-After": str(retry_after)} if retry_after is not None else None
        return error_response(status_of(exc), exc.message, headers, **exc.extra)
    if isinstance(exc, StoreUnavailable):
        # every store fault (locked, disk full, gone) arrives here as StoreUnavailable: nothing was written
        return error_response(503, f"{exc}; nothing was stored, try again shortly", {"Retry-After": "5"})
    if isinstance(exc, EngineError):
        # the runtime turns an engine's state conflict into Conflict (409); any other engine refusal
        # is a temporary 503, never a 500
        return error_response(503, f"the WhatsApp connection could not do this now: {exc}", {"Retry-After": "5"})
    return None


def unexpected_response(path: str) -> JSONResponse:
    """The 500 answer to an unexpected exception (logged with its traceback; the body says nothing more)."""
    log.exception("unhandled_error", path=path)
    return error_response(500, "internal error")


def install(app: FastAPI) -> None:
    """Register the exception handlers on ``app``."""

    @app.exception_handler(ApiError)
    @app.exception_handler(StoreUnavailable)
    @app.exception_handler(EngineError)
    async def _refused(_request: Request, exc: Exception) -> JSONResponse:
        response = refusal_response(exc)
        assert response is not None
        return response

    @app.exception_handler(RequestValidationError)
    async def _invalid(_request: Request, exc: RequestValidationError) -> JSONResponse:
        status, message = _describe(list(exc.errors()))
        return error_response(status, message)

    @app.exception_handler(StarletteHTTPException)
    async def _http(_request: Request, exc: StarletteHTTPException) -> JSONResponse:
        message = exc.detail if isinstance(exc.detail, str) else "error"
        if exc.status_code == 404 and message == "Not Found":
            message = "Not found"
        return error_response(exc.status_code, message, getattr(exc, "headers", None))

    @app.exception_handler(Exception)
    async def _unexpected(request: Request, exc: Exception) -> JSONResponse:
        return unexpected_response(request.url.path)
