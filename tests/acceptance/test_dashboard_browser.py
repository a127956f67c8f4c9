"""The dashboard in headless Chromium against a real ``wa-hub serve`` process (sandbox engine).

An operator signs in, creates an instance, sees its QR, links it (through the sandbox API) and
watches the badge turn ready without reloading; a message sent through the API shows up as sent,
a queued item is canceled, a dead letter is replayed. A wrong key or a forged cookie reaches no page
and no action, and an instance named ``<script>alert(1)</script>`` renders as text.

Chromium is Debian's (``WAHUB_CHROMIUM`` or ``/usr/bin/chromium``); no browser is ever downloaded.
Screenshots go to ``docs/screenshots/`` only with ``WAHUB_REFRESH_SCREENSHOTS=1``.
"""

from __future__ import annotations

import os
import re
import sqlite3
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.support.receiver import Receiver
from tests.support.server import API_KEY, Server
from wahub.dashboard import routes, session

pytestmark = [pytest.mark.browser, pytest.mark.slow]

CHROMIUM = os.environ.get("WAHUB_CHROMIUM", "/usr/bin/chromium")
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
                 "--disable-sync", "--no-first-run"]
DOCS_SCREENSHOTS = Path(__file__).resolve().parents[2] / "docs" / "screenshots"
DEAD_PAGE = 10  # dead letters per page on the instance page
WAIT_MS = 15_000
XSS_NAME = "<script>alert(1)</script>"

if not Path(CHROMIUM).is_file():
    if os.environ.get("CI"):  # .ci/run installs Chromium: a missing browser there is a failure, not a skip
        pytest.fail(f"CI without a Chromium binary at {CHROMIUM}", pytrace=False)
    pytest.skip(f"no Chromium binary at {CHROMIUM} (install Debian's chromium or set WAHUB_CHROMIUM)",
                allow_module_level=True)

sync_api = pytest.importorskip("playwright.sync_api")
expect = sync_api.expect


@pytest.fixture(scope="module")
def receiver() -> Iterator[Receiver]:
    """A webhook receiver answering 404 (not retried: every event becomes a dead letter at once)."""
    with Receiver(default_status=404) as r:
        yield r


@pytest.fixture(scope="module")
def hub(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    with Server(tmp_path_factory.mktemp("hub"), env={"SEND_INTERVAL_MS": "200", "WEBHOOK_MAX_ATTEMPTS": "2",
                                                      "WEBHOOK_RETRY_BASE_MS": "50"}) as server:
        yield server


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    with sync_api.sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS)
        try:
            yield b
        finally:
            b.close()


@pytest.fixture
def page(browser: Any) -> Iterator[Any]:
    context = browser.new_context(viewport={"width": 1280, "height": 900})
    pg = context.new_page()
    pg.set_default_timeout(WAIT_MS)
    dialogs: list[str] = []
    pg.on("dialog", lambda d: (dialogs.append(d.message), d.dismiss()))
    pg.dialogs = dialogs
    try:
        yield pg
    finally:
        context.close()


def shots_dir(tmp_path: Path) -> Path:
    if os.environ.get("WAHUB_REFRESH_SCREENSHOTS") == "1":
        DOCS_SCREENSHOTS.mkdir(parents=True, exist_ok=True)
        return DOCS_SCREENSHOTS
    return tmp_path


def sign_in(page: Any, hub: Server, key: str = API_KEY) -> None:
    page.goto(hub.url + "/dashboard")
    expect(page).to_have_url(re.compile(r"/dashboard/login"))
    page.fill("input[name=api_key]", key)
    page.click("button[type=submit]")



@pytest.mark.timeout(180)
def test_operator_links_sends_cancels_and_replays(page: Any, hub: Server, receiver: Receiver,
                                                 tmp_path: Path) -> None:
    c = hub.client
    sign_in(page, hub)
    expect(page).to_have_url(hub.url + "/dashboard")
    expect(page.get_by_role("heading", name="Instances")).to_be_visible()

    # Create an instance whose webhooks go to a URL that answers 404.
    page.click("text=New instance >> nth=0")
    page.fill("input[name=name]", "Cairo Shop")
    page.fill("input[name=webhook_url]", receiver.url)
    page.click("button:has-text('Create')")
    expect(page).to_have_url(re.compile(r"/dashboard/instances/Cairo_Shop\?done=created"))
    iid = "Cairo_Shop"

    # The QR appears (the live section polls) and is a PNG.
    qr = page.locator("img[data-testid=qr]")
    expect(qr).to_be_visible()
    assert (qr.get_attribute("src") or "").startswith("data:image/png;base64,iVBORw0KGgo")

    # Link through the sandbox while the list page is open: the badge turns ready without a reload.
    page.goto(hub.url + "/dashboard")
    badge = page.locator(f"tr[data-instance='{iid}'] .badge[data-state]")
    expect(badge).to_have_text("scan QR")
    page.evaluate("window.__notReloaded = true")
    assert c.post(f"/sandbox/instances/{iid}/scan", json={"phone": "201000000099"}).status_code == 200
    expect(badge).to_have_attribute("data-state", "ready")
    expect(badge).to_have_text("ready")
    assert page.evaluate("window.__notReloaded === true")
    expect(page.locator(f"tr[data-instance='{iid}'] td[data-label=Phone]")).to_have_text("201000000099")

    # A message sent through the API shows up in the queue view as sent.
    r = c.post(f"/instances/{iid}/client/action/send-message",
               json={"chatId": "+20 100 000 0001", "message": "Your order #1001 is on its way <b>now</b>"})
    assert r.status_code == 202, r.text
    sent_id = r.json()["queueId"]
    page.click(f"tr[data-instance='{iid}'] a")
    sent_row = page.locator(f"tr[data-queue-id='{sent_id}']")
    expect(sent_row).to_have_attribute("data-status", "sent")
    expect(sent_row).to_contain_text("Your order #1001 is on its way <b>now</b>")

    # One send a minute: the next item stays queued, and the operator cancels it.
    assert c.put(f"/instances/{iid}", json={"limits": {"perMinute": 1}}).status_code == 200
    r = c.post(f"/instances/{iid}/client/action/send-message",
               json={"chatId": "201000000002", "message": "this one waits for the minute window"})
    assert r.status_code == 202, r.text
    waiting_id = r.json()["queueId"]
    waiting_row = page.locator(f"tr[data-queue-id='{waiting_id}']")
    expect(waiting_row).to_have_attribute("data-status", "queued")
    waiting_row.get_by_role("button", name="Cancel").click()
    expect(page.locator("p.notice")).to_have_text("Item canceled.")
    expect(page.locator(f"tr[data-queue-id='{waiting_id}']")).to_have_attribute("data-status", "canceled")
    item = c.get(f"/instances/{iid}/messages/{waiting_id}").json()["item"]
    assert item["status"] == "canceled"

    # Rate-limit gauge and restart budget are on the page.
    expect(page.locator("[data-testid=per-minute]")).to_have_text("1 / 1")
    expect(page.locator("[data-testid=budget]")).to_contain_text("/ 4")

    # Webhooks answered 404 → dead letters; replay one once the receiver is healthy again.
    dead_row = page.locator("tr.dead-letter").first
    expect(dead_row).to_be_visible()
    event_id = dead_row.get_attribute("data-event-id")
    assert event_id
    receiver.default_status = 200
    dead_row.get_by_role("button", name="Replay").click()
    expect(page.locator("p.notice")).to_have_text("Dead letters queued for delivery again.")
    receiver.wait_for(lambda reqs: sum(q.headers.get("webhook-id") == event_id for q in reqs) >= 2, timeout=15)

    def delivered() -> bool:
        events = c.get(f"/instances/{iid}/webhooks/deliveries", params={"limit": 500}).json()["events"]
        return any(e["eventId"] == event_id and e["status"] == "delivered" for e in events)

    hub.wait_until(delivered)
    # The replayed event left the dead letters on the page (the recent-deliveries table shows only the
    # newest events, and the replayed one keeps its original place in the instance's order).
    page.reload()
    expect(page.locator(f"tr.dead-letter[data-event-id='{event_id}']")).to_have_count(0)
    assert event_id not in c.get(f"/instances/{iid}/webhooks/dead-letters").text

    # Screenshots of the list and the instance page (desktop) and the instance page on a phone.
    out = shots_dir(tmp_path)
    page.screenshot(path=str(out / "dashboard-instance.png"), full_page=True)
    page.goto(hub.url + "/dashboard")
    expect(page.locator(f"tr[data-instance='{iid}'] .badge[data-state=ready]")).to_be_visible()
    page.screenshot(path=str(out / "dashboard-instances.png"), full_page=True)
    page.set_viewport_size({"width": 390, "height": 844})
    page.goto(f"{hub.url}/dashboard/instances/{iid}")
    expect(page.locator("#state-badge")).to_have_text("ready")
    assert page.evaluate("document.documentElement.scrollWidth <= window.innerWidth + 1"), "page scrolls sideways"
    page.screenshot(path=str(out / "dashboard-instance-phone.png"), full_page=True)
    assert page.dialogs == []


@pytest.mark.timeout(120)
def test_script_in_a_name_renders_as_text(page: Any, hub: Server) -> None:
    sign_in(page, hub)
    page.goto(hub.url + "/dashboard/new")
    page.fill("input[name=name]", XSS_NAME)
    page.click("button:has-text('Create')")
    expect(page.locator("h1.name")).to_have_text(XSS_NAME)
    iid = hub.client.get("/instances").json()
    iid = next(i["id"] for i in iid if i["name"] == XSS_NAME)
    r = hub.client.post(f"/instances/{iid}/client/action/send-message",
                        json={"chatId": "201000000003", "message": "<img src=x onerror=alert(2)>"})
    assert r.status_code == 202
    expect(page.locator(f"tr[data-queue-id='{r.json()['queueId']}']")).to_contain_text(
        "<img src=x onerror=alert(2)>")
    page.goto(hub.url + "/dashboard")
    expect(page.get_by_text(XSS_NAME, exact=True)).to_be_visible()
    page.reload()
    expect(page.get_by_text(XSS_NAME, exact=True)).to_be_visible()
    assert page.locator("img[src=x]").count() == 0
    assert page.dialogs == []


def _guarded_requests(iid: str, queue_id: str) -> list[tuple[str, str]]:
    """Every guarded dashboard route as (method, concrete path)."""
    out = []
    for route in routes.guarded.routes:
        path = route.path.format(instance_id=iid, queue_id=queue_id, action="cancel",  # type: ignore[attr-defined]
                                 event_id="evt_guess", kind="message")
        for method in sorted(route.methods - {"HEAD"}):  # type: ignore[attr-defined]
            out.append((method, path))
    return out


@pytest.mark.timeout(120)
def test_wrong_key_or_forged_cookie_reaches_nothing(page: Any, hub: Server) -> None:
    c = hub.client
    iid = c.post("/instances", json={"name": "guarded-shop"}).json()["instance"]["id"]
    queue_id = c.post(f"/instances/{iid}/client/action/send-message",
                      json={"chatId": "201000000004", "message": "must stay queued"}).json()["queueId"]

    # In the browser: a wrong key stays on the login form, and no page opens.
    sign_in(page, hub, key="not-the-api-key")
    expect(page.locator("[data-testid=error]")).to_have_text("Invalid API key.")
    for path in ("/dashboard", f"/dashboard/instances/{iid}", "/dashboard/new"):
        page.goto(hub.url + path)
        expect(page).to_have_url(re.compile(r"/dashboard/login"))
        expect(page.get_by_text("guarded-shop")).to_have_count(0)

    # Over HTTP: every guarded route, with no cookie, a cookie signed with a wrong key, a tampered
    # cookie, and (for POST) a genuine session without its CSRF token.
    now = int(time.time())
    wrong_key_cookie = session.issue(session.signing_key("not-the-api-key"), now)
    with httpx.Client(base_url=hub.url, follow_redirects=False, timeout=10) as anon:
        r = anon.post("/dashboard/login", data={"api_key": API_KEY})
        assert r.status_code == 303
        genuine = r.cookies[session.COOKIE_NAME]
        body, sig = genuine.split(".")
        tampered = body[:-2] + ("AA" if body[-2:] != "AA" else "BB") + "." + sig
        anon.cookies.clear()
        requests = _guarded_requests(iid, queue_id)
        assert len(requests) >= 15
        for cookie in (None, wrong_key_cookie, tampered, "garbage", genuine + "x"):
            headers = {"cookie": f"{session.COOKIE_NAME}={cookie}"} if cookie else {}
            for method, path in requests:
                r = anon.request(method, path, headers=headers, data={
                    "csrf_token": "guess", "name": "intruder", "type": "hard", "phone": "201000000005",
                    "webhook_url": "http://127.0.0.1:9/intruder", "chat_id": "201000000005", "message": "intruder"})
                if method == "GET":
                    assert r.status_code == 303 and r.headers["location"].startswith("/dashboard/login"), (
                        method, path, r.status_code)
                else:
                    assert r.status_code == 401, (method, path, r.status_code)
                assert "guarded-shop" not in r.text and "must stay queued" not in r.text
        for method, path in requests:
            if method != "POST":
                continue
            r = anon.post(path, headers={"cookie": f"{session.COOKIE_NAME}={genuine}"}, data={"name": "intruder"})
            assert r.status_code == 403, (path, r.status_code)
        # A cross-site login attempt is refused.
        r = anon.post("/dashboard/login", data={"api_key": API_KEY}, headers={"origin": "https://evil.example"})
        assert r.status_code == 403

    # Nothing happened: the instance, its item and its state are as they were.
    assert c.get(f"/instances/{iid}").status_code == 200
    assert c.get(f"/instances/{iid}/messages/{queue_id}").json()["item"]["status"] == "queued"
    assert all(i["name"] != "intruder" for i in c.get("/instances").json())
    status = c.get(f"/instances/{iid}/status").json()
    assert status["reconnection"]["restartsInWindow"] == 0
    assert status["webhook"]["url"] is None and status["queue"]["depth"] == 1 and status["instance"]["state"] != "ready"


@pytest.mark.timeout(180)
def test_operator_sees_a_failing_webhook_and_fixes_it_with_the_new_actions(page: Any, hub: Server,
                                                                         tmp_path: Path) -> None:
    c = hub.client
    with Receiver(default_status=503) as down, Receiver() as up:
        iid = c.post("/instances", json={"name": "Alex Shop", "webhook": {"url": down.url}}).json()["instance"]["id"]
        hub.wait_until(lambda: c.get(f"/instances/{iid}/status").json()["webhook"]["failing"])

        # GET / leads to the dashboard; the list flags the failing webhook.
        page.goto(hub.url + "/")
        expect(page).to_have_url(re.compile(r"/dashboard/login"))
        page.fill("input[name=api_key]", API_KEY)
        page.click("button[type=submit]")
        expect(page).to_have_url(hub.url + "/dashboard")
        row = page.locator(f"tr[data-instance='{iid}']")
        expect(row.locator("[data-testid=webhook-failing]")).to_be_visible()
        page.fill("input[name=q]", "alex")
        page.click("button:has-text('Filter')")
        expect(page.locator("tr[data-instance]")).to_have_count(1)

        # The instance page shows a banner; the sandbox "Scan QR" button links the instance.
        row.locator("a.name").click()
        expect(page.locator("[data-testid=webhook-banner]")).to_contain_text("HTTP 503")
        page.click("[data-testid=scan]")
        expect(page.locator("p.notice")).to_contain_text("scanned")
        expect(page.locator("#state-badge")).to_have_text("ready")

        # More events fail: the dead letters come in pages of ten.
        for n in range(DEAD_PAGE + 1):
            r = c.post(f"/sandbox/instances/{iid}/messages", json={"from": "201000000021", "text": f"hello {n}"})
            assert r.status_code == 200, r.text

        def all_dead() -> int:
            hook = c.get(f"/instances/{iid}/status").json()["webhook"]
            return int(hook["dead"]) if hook["backlog"] == 0 and hook["dead"] > DEAD_PAGE else 0

        dead = hub.wait_until(all_dead)
        page.reload()
        expect(page.locator("tr.dead-letter")).to_have_count(DEAD_PAGE)
        page.click("[data-testid=dead-pager] a[rel=next]")
        expect(page.locator("tr.dead-letter")).to_have_count(dead - DEAD_PAGE)

        # A delivery's payload and the receiver's answer.
        page.locator("tr.dead-letter a").first.click()
        expect(page.locator("[data-testid=delivery-response]")).to_contain_text("HTTP 503")
        expect(page.locator("[data-testid=payload]")).to_contain_text(f'"instanceId": "{iid}"')
        page.click("text=Back to the instance")

        # Point the webhook at a healthy receiver, only for message_sent, with a secret of its own.
        form = page.locator("#webhook-settings")
        form.locator("input[name=webhook_url]").fill(up.url)
        form.locator("input[value=message_sent]").check()
        form.locator("input[name=webhook_secret]").fill("alex-shop-secret-1")
        form.get_by_role("button", name="Save webhook settings").click()
        expect(page.locator("p.notice")).to_have_text("Webhook settings saved.")
        hook = c.get(f"/instances/{iid}/status").json()["webhook"]
        assert (hook["url"], hook["events"], hook["secretConfigured"]) == (up.url, ["message_sent"], True)

        # A test message and a test poll go out through the queue.
        tm = page.locator("#test-message")
        tm.locator("input[name=chat_id]").fill("+20 100 000 0031")
        tm.locator("textarea[name=message]").fill("dashboard test message")
        tm.get_by_role("button").click()
        expect(page.locator("p.notice")).to_contain_text("Test message queued")
        tp = page.locator("#test-poll")
        tp.locator("input[name=chat_id]").fill("201000000031")
        tp.locator("input[name=caption]").fill("Confirm order #7?")
        tp.locator("textarea[name=options]").fill("Yes\nNo")
        tp.get_by_role("button").click()
        expect(page.locator("p.notice")).to_contain_text("Test poll queued")
        expect(page.locator("tr[data-status=sent]").filter(has_text="Confirm order #7?")).to_have_count(1)
        expect(page.locator("tr[data-status=sent]").filter(has_text="dashboard test message")).to_have_count(1)
        sent = c.get(f"/sandbox/instances/{iid}/sent").json()["messages"]
        assert [(m["kind"], m["chatId"]) for m in sent] == [("text", "201000000031@c.us"),
                                                            ("poll", "201000000031@c.us")]

        # The healthy receiver gets message_sent events, and the failing banner goes away by itself.
        up.wait_for(lambda reqs: sum(q.json["event"] == "message_sent" for q in reqs) >= 2, timeout=15)
        expect(page.locator("[data-testid=webhook-banner]")).to_have_count(0)
        page.screenshot(path=str(shots_dir(tmp_path) / "dashboard-actions.png"), full_page=True)
        assert page.dialogs == []


@pytest.fixture(scope="module")
def quiet_hub(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """A hub whose simulated WhatsApp never acknowledges a send (a zombie session after two sends)."""
    with Server(tmp_path_factory.mktemp("quiet"), env={"SEND_INTERVAL_MS": "0", "SANDBOX_AUTO_ACK": "false",
                                                        "DEGRADED_AFTER_SENDS": "2"}) as server:
        yield server


@pytest.mark.timeout(180)
def test_operator_sees_degraded_last_error_and_a_store_fault(page: Any, quiet_hub: Server) -> None:
    hub, c = quiet_hub, quiet_hub.client
    sign_in(page, hub)

    # Two sends and no server ack: the instance is degraded, on the list and on its page, without a reload.
    assert c.post("/instances", json={"name": "zombie"}).status_code in (200, 201)
    assert c.post("/sandbox/instances/zombie/scan", json={"phone": "201000000077"}).status_code == 200
    hub.wait_until(lambda: c.get("/instances/zombie").json()["instance"]["status"] == "ready")
    page.goto(hub.url + "/dashboard")
    page.evaluate("window.__notReloaded = true")
    for i in range(2):
        r = c.post("/instances/zombie/client/action/send-message", json={"chatId": "201000000001",
                                                                          "message": f"order {i}"})
        assert r.status_code == 202, r.text
    expect(page.locator("tr[data-instance='zombie'] [data-testid=degraded]")).to_be_visible()
    assert page.evaluate("window.__notReloaded === true")
    page.goto(f"{hub.url}/dashboard/instances/zombie")
    expect(page.locator("[data-testid=degraded-reason]")).to_contain_text("without any server ack")

    # WhatsApp unreachable: the connect failure is the instance's last error, at once.
    assert c.post("/instances", json={"name": "offline"}).status_code in (200, 201)
    assert c.post("/sandbox/instances/offline/faults", json={"kind": "unreachable", "reason": "dns"}).status_code == 200
    assert c.post("/instances/offline/restart", json={"type": "hard"}).status_code == 200
    page.goto(f"{hub.url}/dashboard/instances/offline")
    expect(page.locator("[data-testid=last-error]")).to_contain_text("unreachable (dns)")

    # The database cannot write (another process holds it locked): a banner, gone once it can again.
    page.goto(f"{hub.url}/dashboard/instances/zombie")
    outside = sqlite3.connect(hub.data_dir / "wa-hub.sqlite3", isolation_level=None, timeout=30)
    try:
        outside.execute("BEGIN EXCLUSIVE")
        r = c.post("/instances/zombie/client/action/send-message", json={"chatId": "201000000001",
                                                                          "message": "while locked"})
        assert r.status_code == 503 and int(r.headers["retry-after"]) >= 1, r.text
        expect(page.locator("[data-testid=store-fault]")).to_be_visible(timeout=WAIT_MS)
    finally:
        outside.rollback()
        outside.close()
    r = c.post("/instances/zombie/client/action/send-message", json={"chatId": "201000000001",
                                                                      "message": "after the lock"})
    assert r.status_code == 202, r.text
    expect(page.locator("[data-testid=store-fault]")).to_have_count(0, timeout=WAIT_MS)
    assert page.dialogs == []
