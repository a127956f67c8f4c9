"""Dashboard routes: login, the instances list, create, the instance page and the operator's actions.

Every page and partial needs a valid session cookie (:mod:`wahub.dashboard.session`); every POST
also needs that session's CSRF token. Without a session a page request is redirected to the login
form and an action is refused (401) before anything runs. Pages read and act only through
:class:`~wahub.runtime.hub.Hub` methods. ``.../partials/...`` are the fragments htmx polls to keep a
page live without reloading it. Templates autoescape everything, so names, message text and error
messages always render as text.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import quote, urlencode, urlsplit

import structlog
from fastapi import APIRouter, Depends, FastAPI, HTTPException, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from starlette.staticfiles import StaticFiles

from wahub.dashboard import session as sessions
from wahub.dashboard import views
from wahub.domain import chatid
from wahub.domain.errors import ApiError
from wahub.domain.outbox import ItemKind
from wahub.edge import brakes
from wahub.edge.auth import key_matches
from wahub.edge.status import status_of
from wahub.runtime.events import WEBHOOK_EVENTS
from wahub.runtime.hub import Hub

log = structlog.get_logger("wahub.dashboard")

PREFIX = "/dashboard"
LOGIN_PATH = f"{PREFIX}/login"
ITEM_ACTIONS = {"cancel": "canceled", "retry": "retried", "resend": "resent", "close": "closed"}


def _hub(request: Request) -> Hub:
    hub: Hub = request.app.state.hub
    return hub


def _now_s(hub: Hub) -> int:
    return hub.clock.now_ms() // 1000


async def require_session(request: Request) -> sessions.Session:
    """Dependency of every guarded route: a valid session, and on POST its CSRF token.

    Raises HTTPException: 303 to the login form (page GET), 401 with ``HX-Redirect`` (htmx GET),
    401 (any POST without a session), 403 (POST with a missing or wrong CSRF token).
    """
    hub = _hub(request)
    key = sessions.signing_key(hub.settings.api_key)
    session = sessions.verify(key, request.cookies.get(sessions.COOKIE_NAME), _now_s(hub))
    if session is None:
        if request.method in ("GET", "HEAD"):
            if request.headers.get("hx-request"):
                raise HTTPException(401, "login required", headers={"HX-Redirect": LOGIN_PATH})
            target = request.url.path + (f"?{request.url.query}" if request.url.query else "")
            raise HTTPException(303, "login required", headers={"Location": f"{LOGIN_PATH}?next={quote(target)}"})
        raise HTTPException(401, "login required: sign in to the dashboard with the API key")
    if request.method == "POST":
        form = await request.form()
        token = form.get("csrf_token") or request.headers.get("x-csrf-token")
        if not isinstance(token, str) or not sessions.csrf_matches(session, token):
            log.warning("dashboard_csrf_rejected", path=request.url.path)
            raise HTTPException(403, "CSRF token missing or invalid; reload the page and try again")
    request.state.session = session
    return session


_open = APIRouter(prefix=PREFIX)
#: Every route that needs a signed-in session (and, for POST, its CSRF token).
guarded = APIRouter(prefix=PREFIX, dependencies=[Depends(require_session)])


def _page(request: Request, template: str, status_code: int = 200, headers: dict[str, str] | None = None,
          **context: Any) -> HTMLResponse:
    session = getattr(request.state, "session", None)
    html = views.render(template, csrf=session.csrf_token if session else None, **context)
    return HTMLResponse(html, status_code=status_code, headers={**views.SECURITY_HEADERS, **(headers or {})})


def _see_other(path: str, **query: str) -> RedirectResponse:
    qs = urlencode({k: v for k, v in query.items() if v})
    return RedirectResponse(path + (f"?{qs}" if qs else ""), status_code=303, headers=views.SECURITY_HEADERS)


def _safe_next(value: str | None) -> str:
    """Only a path inside the dashboard is a valid place to return to after login (no open redirect)."""
    if value and value.startswith(PREFIX) and "//" not in value and "\\" not in value:
        return value
    return PREFIX


def _instance_path(instance_id: str) -> str:
    return f"{PREFIX}/instances/{quote(instance_id, safe='')}"


# -- login ---------------------------------------------------------------------------------------
@_open.get("/login")
async def login_form(request: Request, next: str | None = None) -> Response:
    hub = _hub(request)
    key = sessions.signing_key(hub.settings.api_key)
    if sessions.verify(key, request.cookies.get(sessions.COOKIE_NAME), _now_s(hub)) is not None:
        return _see_other(_safe_next(next))
    return _page(request, "login.html", next=_safe_next(next))


@_open.post("/login")
async def login(request: Request) -> Response:
    hub = _hub(request)
    origin = request.headers.get("origin")
    if origin is not None and urlsplit(origin).netloc != request.headers.get("host"):
        log.warning("dashboard_login_rejected", reason="cross-origin")
        raise HTTPException(403, "cross-origin login refused")
    form = await request.form()
    given = form.get("api_key")
    target = _safe_next(str(form.get("next") or ""))
    client = brakes.client_address(request.scope)
    wait_s = request.app.state.brake.retry_after_s(client, hub.clock.now_ms())
    if wait_s:  # too many failed logins from this address: the key is not even compared
        return _page(request, "login.html", status_code=429, next=target, headers={"Retry-After": str(wait_s)},
                     error=f"Too many failed sign-ins from your address. Try again in {wait_s} seconds.")
    if not isinstance(given, str) or not given or not key_matches(hub.settings.api_key, given):
        brakes.failure(request.app.state.brake, client, hub.clock.now_ms(), "dashboard_login_failed")
        return _page(request, "login.html", status_code=401, next=target, error="Invalid API key.")
    cookie = sessions.issue(sessions.signing_key(hub.settings.api_key), _now_s(hub))
    response = _see_other(target)
    response.set_cookie(sessions.COOKIE_NAME, cookie, max_age=sessions.SESSION_MAX_AGE_S, path=PREFIX,
                        httponly=True, samesite="strict", secure=request.url.scheme == "https")
    log.info("dashboard_login")
    return response


@guarded.post("/logout")
async def logout(request: Request) -> Response:
    sessions.revoke(sessions.signing_key(_hub(request).settings.api_key), request.cookies.get(sessions.COOKIE_NAME))
    response = _see_other(LOGIN_PATH)
    response.delete_cookie(sessions.COOKIE_NAME, path=PREFIX, httponly=True, samesite="strict")
    log.info("dashboard_logout")
    return response


# -- instances list ------------------------------------------------------------------------------
@guarded.get("")
async def instances_page(request: Request, done: str | None = None, q: str | None = None,
                         state: str | None = None, page: str | None = None) -> Response:
    context = await views.fleet_context(_hub(request), q, state, page)
    return _page(request, "instances.html", notice=views.notice(done), **context)


@guarded.get("/partials/instances")
async def instances_partial(request: Request, q: str | None = None, state: str | None = None,
                            page: str | None = None) -> Response:
    return _page(request, "_fleet.html", **await views.fleet_context(_hub(request), q, state, page))


@guarded.get("/new")
async def new_instance_form(request: Request) -> Response:
    return _page(request, "new.html", events=WEBHOOK_EVENTS, values={"name": "", "webhook_url": "", "events": []})


@guarded.post("/instances")
async def create_instance(request: Request) -> Response:
    form = await request.form()
    name = str(form.get("name") or "")
    url = str(form.get("webhook_url") or "").strip()
    events = [str(e) for e in form.getlist("events")]
    secret = str(form.get("webhook_secret") or "").strip() or None
    values = {"name": name, "webhook_url": url, "events": events}
    try:
        rt = await _hub(request).create_instance(name, url or None, events, secret)
    except ApiError as exc:
        return _page(request, "new.html", status_code=status_of(exc), events=WEBHOOK_EVENTS, values=values,
                     error=exc.message)
    return _see_other(_instance_path(rt.id), done="created")


# -- one instance --------------------------------------------------------------------------------
async def _instance_page(request: Request, instance_id: str, *, status: str | None = None,
                         dead_page: str | None = None, status_code: int = 200, **extra: Any) -> Response:
    hub = _hub(request)
    try:
        context = await views.instance_context(hub, instance_id, status, dead_page)
    except ApiError as exc:
        return _page(request, "missing.html", status_code=status_of(exc), error=exc.message)
    return _page(request, "instance.html", status_code=status_code, **{**context, **extra})


@guarded.get("/instances/{instance_id}")
async def instance_page(request: Request, instance_id: str, status: str | None = None,
                        done: str | None = None, dead_page: str | None = None) -> Response:
    return await _instance_page(request, instance_id, status=status, dead_page=dead_page,
                                notice=views.notice(done))


@guarded.get("/instances/{instance_id}/partials/live")
async def live_partial(request: Request, instance_id: str) -> Response:
    try:
        context = await views.live_context(_hub(request), instance_id)
    except ApiError:
        return HTMLResponse("", status_code=286, headers=views.SECURITY_HEADERS)  # 286: htmx stops polling
    return _page(request, "_live.html", **context)


@guarded.get("/instances/{instance_id}/partials/queue")
async def queue_partial(request: Request, instance_id: str, status: str | None = None) -> Response:
    try:
        context = await views.queue_context(_hub(request), instance_id, status)
    except ApiError:
        return HTMLResponse("", status_code=286, headers=views.SECURITY_HEADERS)
    return _page(request, "_queue.html", **context)


@guarded.get("/instances/{instance_id}/partials/webhooks")
async def webhooks_partial(request: Request, instance_id: str, dead_page: str | None = None) -> Response:
    try:
        context = await views.webhooks_context(_hub(request), instance_id, dead_page)
    except ApiError:
        return HTMLResponse("", status_code=286, headers=views.SECURITY_HEADERS)
    return _page(request, "_webhooks.html", **context)


@guarded.post("/instances/{instance_id}/items/{queue_id}/{action}")
async def item_action(request: Request, instance_id: str, queue_id: str, action: str) -> Response:
    hub = _hub(request)
    form = await request.form()
    status = views.status_filter(str(form.get("status") or ""))
    calls = {"cancel": hub.outbox.cancel_item, "retry": hub.outbox.retry_item, "resend": hub.outbox.resend_item,
             "close": hub.outbox.close_item}
    if action not in calls:
        raise HTTPException(404, f"unknown action {action!r}")
    try:
        rt = hub.get(instance_id)
        await calls[action](rt.id, queue_id)
    except ApiError as exc:
        return await _instance_page(request, instance_id, status=status, status_code=status_of(exc),
                                    error=exc.message)
    log.info("dashboard_item_action", instance_id=rt.id, queue_id=queue_id, action=action)
    return _see_other(_instance_path(rt.id), status=status or "", done=ITEM_ACTIONS[action])


@guarded.post("/instances/{instance_id}/replay")
async def replay(request: Request, instance_id: str) -> Response:
    hub = _hub(request)
    form = await request.form()
    event_id = str(form.get("event_id") or "") or None
    try:
        n = await hub.replay_events(instance_id, event_id)
    except ApiError as exc:
        return await _instance_page(request, instance_id, status_code=status_of(exc), error=exc.message)
    log.info("dashboard_replay", instance_id=hub.get(instance_id).id, event_id=event_id, replayed=n)
    return _see_other(_instance_path(hub.get(instance_id).id), done="replayed")


@guarded.post("/instances/{instance_id}/restart")
async def restart(request: Request, instance_id: str) -> Response:
    form = await request.form()
    kind = str(form.get("type") or "soft")
    try:
        rt = await _hub(request).restart(instance_id, kind)
    except ApiError as exc:
        return await _instance_page(request, instance_id, status_code=status_of(exc), error=exc.message)
    log.info("dashboard_restart", instance_id=rt.id, kind=kind)
    return _see_other(_instance_path(rt.id), done="restarted")


@guarded.post("/instances/{instance_id}/logout")
async def logout_instance(request: Request, instance_id: str) -> Response:
    try:
        rt = await _hub(request).logout(instance_id)
    except ApiError as exc:
        return await _instance_page(request, instance_id, status_code=status_of(exc), error=exc.message)
    log.info("dashboard_instance_logout", instance_id=rt.id)
    return _see_other(_instance_path(rt.id), done="logged_out")


@guarded.post("/instances/{instance_id}/pairing-code")
async def pairing_code(request: Request, instance_id: str) -> Response:
    form = await request.form()
    phone = str(form.get("phone") or "")
    try:
        code = await _hub(request).request_pairing_code(instance_id, phone)
    except ApiError as exc:
        return await _instance_page(request, instance_id, status_code=status_of(exc), error=exc.message,
                                    phone=phone)
    return await _instance_page(request, instance_id, pairing_code=code, phone=phone)


@guarded.get("/instances/{instance_id}/deliveries/{event_id}")
async def delivery_page(request: Request, instance_id: str, event_id: str) -> Response:
    try:
        context = await views.delivery_context(_hub(request), instance_id, event_id)
    except ApiError as exc:
        return _page(request, "missing.html", status_code=status_of(exc), error=exc.message)
    return _page(request, "delivery.html", **context)


@guarded.post("/instances/{instance_id}/webhook")
async def edit_webhook(request: Request, instance_id: str) -> Response:
    """Change the webhook URL, events (none = all) and secret; a blank secret keeps the current one."""
    hub = _hub(request)
    form = await request.form()
    url = str(form.get("webhook_url") or "").strip()
    secret = str(form.get("webhook_secret") or "")
    changes: dict[str, Any] = {"events": [str(e) for e in form.getlist("events")]}
    try:
        rt = hub.get(instance_id)
        if url != views.display_url(rt.record.webhook_url):  # an unchanged (masked) URL keeps its credentials
            changes["webhook_url"] = url or None
        if form.get("clear_secret"):
            changes["webhook_secret"] = None
        elif secret:
            changes["webhook_secret"] = secret
        await hub.update_instance(rt.id, **changes)
    except ApiError as exc:
        return await _instance_page(request, instance_id, status_code=status_of(exc), error=exc.message)
    log.info("dashboard_webhook_saved", instance_id=rt.id, url_changed="webhook_url" in changes,
             secret_changed="webhook_secret" in changes)
    return _see_other(_instance_path(rt.id), done="webhook_saved")


@guarded.post("/instances/{instance_id}/test/{kind}")
async def test_send(request: Request, instance_id: str, kind: str) -> Response:
    """Queue a test text message or poll through the outbox (same pacing, limits and idempotency)."""
    if kind not in ("message", "poll"):
        raise HTTPException(404, f"unknown test {kind!r}")
    hub = _hub(request)
    form = await request.form()
    body: dict[str, Any] = {"chatId": str(form.get("chat_id") or "")}
    if kind == "message":
        body["message"] = str(form.get("message") or "")
    else:
        body.update(caption=str(form.get("caption") or ""), multipleAnswers=bool(form.get("multiple")),
                    options=[o.strip() for o in str(form.get("options") or "").splitlines() if o.strip()])
    try:
        rt = hub.get(instance_id)
        result = await hub.outbox.enqueue(rt.id, ItemKind.TEXT if kind == "message" else ItemKind.POLL, body,
                                   header_key=None)
    except ApiError as exc:
        return await _instance_page(request, instance_id, status_code=status_of(exc), error=exc.message)
    log.info("dashboard_test_send", instance_id=rt.id, queue_id=result.item.queue_id, kind=kind)
    return _see_other(_instance_path(rt.id), done=f"test_{kind}")


@guarded.post("/instances/{instance_id}/scan")
async def sandbox_scan(request: Request, instance_id: str) -> Response:
    """Sandbox engine only: scan the shown QR code with a simulated phone (optional number)."""
    hub = _hub(request)
    if hub.sandbox is None:
        raise HTTPException(404, "the sandbox engine is not in use")
    form = await request.form()
    phone = str(form.get("phone") or "").strip()
    try:
        rt = hub.get(instance_id)
        digits = chatid.phone_number(chatid.normalize(phone, field="phone")) if phone else None
        await hub.sandbox.scan(rt.id, phone=digits)
    except ApiError as exc:
        return await _instance_page(request, instance_id, status_code=status_of(exc), error=exc.message)
    log.info("dashboard_sandbox_scan", instance_id=rt.id)
    return _see_other(_instance_path(rt.id), done="scanned")


@guarded.get("/instances/{instance_id}/delete")
async def delete_form(request: Request, instance_id: str) -> Response:
    try:
        rt = _hub(request).get(instance_id)
    except ApiError as exc:
        return _page(request, "missing.html", status_code=status_of(exc), error=exc.message)
    return _page(request, "delete.html", instance_id=rt.id, name=rt.record.name)


@guarded.post("/instances/{instance_id}/delete")
async def delete_instance(request: Request, instance_id: str) -> Response:
    deleted = await _hub(request).delete_instance(instance_id)
    if deleted is None:
        return _page(request, "missing.html", status_code=404, error=f"instance {instance_id} not found")
    log.info("dashboard_instance_deleted", instance_id=instance_id)
    return _see_other(PREFIX, done="deleted")


# Prefixes are set on the routers above (not at include time) so every route's ``path`` is the full
# template the HTTP metrics label requests with.
router = APIRouter(include_in_schema=False)
router.include_router(_open)
router.include_router(guarded)


def mount_static(app: FastAPI) -> None:
    """Serve the packaged CSS and JavaScript (htmx) at ``/dashboard/static`` (public, no secrets)."""
    app.mount(f"{PREFIX}/static", StaticFiles(packages=[("wahub.dashboard", "static")]), name="dashboard-static")
