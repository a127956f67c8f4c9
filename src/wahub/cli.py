"""The ``wa-hub`` command: ``serve`` runs a hub; the other commands call a running hub's HTTP API."""

from __future__ import annotations

import asyncio
import contextlib
import gc
import json
import os
import sys
from pathlib import Path
from typing import Any

import click
import httpx


@click.group()
@click.version_option(package_name="wahub")
def main() -> None:
    """wa-hub: a self-hosted WhatsApp gateway."""
    from wahub import config

    config.load_env_file(Path(".env"))  # before any option reads its environment variable


@main.command()
@click.option("--host", envvar="HOST", default="127.0.0.1", show_default=True, help="address to listen on")
@click.option("--port", envvar="PORT", default=3000, show_default=True, type=int, help="TCP port")
@click.option("--data-dir", envvar="DATA_DIR", default="./data", show_default=True, help="SQLite file, sessions")
@click.option("--engine", envvar="WAHUB_ENGINE", default="whatsmeow", show_default=True,
              type=click.Choice(["sandbox", "whatsmeow"]), help="WhatsApp engine")
@click.option("--log-level", envvar="LOG_LEVEL", default="info", show_default=True,
              type=click.Choice(["debug", "info", "warning", "warn", "error"], case_sensitive=False))
def serve(host: str, port: int, data_dir: str, engine: str, log_level: str) -> None:
    """Run the hub (settings from the environment; see .env.example)."""
    from pydantic import ValidationError

    from wahub import config
    from wahub.observability import configure_logging

    try:
        settings = config.load(host=host, port=port, data_dir=data_dir, engine=engine, log_level=log_level)
    except ValidationError as exc:
        click.echo(config.describe_error(exc), err=True)
        sys.exit(2)
    from wahub import serving

    try:  # the port, then the data directory and its lock: before any engine or worker starts
        sock = serving.bind(settings.host, settings.port)
        serving.prepare_data_dir(settings.data_dir)
        lock = serving.lock_data_dir(settings.data_dir)
        serving.check_database(settings.data_dir, settings.resolved_database_url)
    except serving.StartupError as exc:
        click.echo(f"wa-hub: {exc}", err=True)
        sys.exit(1)
    configure_logging(settings.log_level, settings.log_format, cache=True, per_turn=True,
                      secrets=(settings.api_key, settings.webhook_secret, settings.webhook_auth_token))
    import uvicorn

    from wahub.runtime.compose import build_hub
    from wahub.web.app import create_app

    hub = build_hub(settings)
    app = create_app(hub)
    click.echo(f"wa-hub listening on http://{settings.host}:{settings.port} (docs at /docs, dashboard at "
               f"/dashboard)", err=True)
    click.echo(f"engine: {settings.engine}" + (" (simulated WhatsApp: link instances with POST "
               "/sandbox/instances/{id}/scan; choose the real engine with --engine whatsmeow)"
               if settings.engine == "sandbox" else " (WhatsApp linked devices through neonize, one worker "
               f"process per instance, sessions in {settings.data_dir / 'sessions'}; link a phone with "
               "`wa-hub qr ID` or a pairing code; try without WhatsApp with --engine sandbox)"), err=True)
    click.echo(f"database: {_safe_url(settings.resolved_database_url)}", err=True)
    click.echo(_key_line(settings.api_key), err=True)
    _tune_gc()
    _tune_gil()
    server = uvicorn.Server(uvicorn.Config(app, host=settings.host, port=settings.port, log_config=None,
                                           access_log=False, lifespan="on", timeout_graceful_shutdown=5,
                                           http=_http_protocol(),
                                           h11_max_incomplete_event_size=serving.MAX_HEADER_BYTES))
    told_to_stop = server.handle_exit

    def handle_exit(sig: int, frame: Any) -> None:  # SIGTERM/SIGINT: refuse new sends and end media fetches now
        with contextlib.suppress(RuntimeError):  # no loop yet: nothing is in progress
            asyncio.get_running_loop().call_soon_threadsafe(hub.begin_shutdown)
        told_to_stop(sig, frame)

    server.handle_exit = handle_exit  # type: ignore[method-assign]
    try:
        server.run(sockets=[sock])
    finally:
        lock.close()


def _key_line(api_key: str | None) -> str:
    """The one line that says where the API key comes from (``scripts/serve`` names its key file)."""
    if api_key is None:
        return "WARNING: no API_KEY set and WAHUB_INSECURE_NO_API_KEY=true: the API is open"
    key_file = os.environ.get("WAHUB_API_KEY_FILE")
    if key_file:
        try:
            with open(key_file, encoding="utf-8") as fh:
                if fh.read().strip() == api_key:
                    return f"API key: generated once and kept in {key_file} (set API_KEY to choose your own)"
        except OSError:
            pass
    return "API key: the value of the API_KEY environment variable"


def _http_protocol() -> Any:
    """The httptools protocol with header limits, or uvicorn's h11 (capped by its own setting) without it."""
    from wahub import serving

    try:
        return serving.capped_http_protocol()
    except ImportError:  # pragma: no cover - httptools ships with uvicorn[standard]
        return "h11"


def _tune_gc() -> None:
    """Fewer, cheaper garbage collections for a long-running server.

    With CPython's default threshold (700 allocations) the cyclic collector runs every few
    requests and its older-generation passes stall the event loop for tens of ms, which is what set
    the enqueue p99 (see docs/PERFORMANCE.md, "Enqueue"). Objects alive after start-up are frozen
    out of collection and generation 0 is collected every 100,000 allocations instead.
    """
    gc.collect()
    gc.freeze()
    gc.set_threshold(100_000, 50, 100)


GIL_SWITCH_INTERVAL_S = 0.001


def _tune_gil() -> None:
    """Hand the GIL over after 1 ms instead of CPython's 5 ms.

    The SQLite connection runs in its own thread (aiosqlite), and ``sqlite3`` releases the GIL around
    every statement step, so a batch of enqueues takes the GIL back a few dozen times. While the event
    loop is busy answering requests, each of those waits up to the switch interval; at 5 ms a batch of
    ~9 enqueues took 2.5–3 ms of wall time for ~0.6 ms of work, and every request waited for it
    (docs/PERFORMANCE.md, "The database thread's wait for the GIL").
    """
    sys.setswitchinterval(GIL_SWITCH_INTERVAL_S)


def _safe_url(url: str) -> str:
    if "@" in url and "://" in url:
        scheme, rest = url.split("://", 1)
        return f"{scheme}://***@{rest.split('@', 1)[1]}"
    return url


class Api:
    """A tiny client of a running hub for the operator commands."""

    def __init__(self, url: str, api_key: str | None) -> None:
        api_key = api_key or _default_key()
        headers = {"authorization": f"Bearer {api_key}"} if api_key else {}
        self.client = httpx.Client(base_url=url.rstrip("/"), headers=headers, timeout=30)

    def call(self, method: str, path: str, **kwargs: Any) -> Any:
        """The decoded JSON answer; raises ClickException on a network error or an HTTP status >= 400."""
        try:
            resp = self.client.request(method, path, **kwargs)
        except httpx.HTTPError as exc:
            raise click.ClickException(f"cannot reach wa-hub at {self.client.base_url}: {exc}") from exc
        try:
            body = resp.json()
        except ValueError:
            body = {"error": resp.text}
        if resp.status_code >= 400:
            msg = body.get("error") if isinstance(body, dict) else str(body)
            raise click.ClickException(f"HTTP {resp.status_code}: {msg}")
        return body


def _api_options(fn: Any) -> Any:
    fn = click.option("--url", envvar="WAHUB_URL", default="http://127.0.0.1:3000", show_default=True,
                      show_envvar=True, help="base URL of the hub")(fn)
    fn = click.option("--api-key", envvar="API_KEY", default=None, show_envvar=True,
                      help="API key (default: $API_KEY, else the key scripts/serve keeps in ./data/api-key)")(fn)
    return fn


def _default_key() -> str | None:
    """The key ``scripts/serve`` generated into ``$DATA_DIR/api-key`` (default ./data), if any."""
    path = os.path.join(os.environ.get("DATA_DIR", "./data"), "api-key")
    try:
        with open(path, encoding="utf-8") as fh:
            return fh.read().strip() or None
    except OSError:
        return None


@main.group()
def instances() -> None:
    """List, create and delete instances."""


@instances.command("list")
@_api_options
def instances_list(url: str, api_key: str | None) -> None:
    """List instances."""
    for inst in Api(url, api_key).call("GET", "/instances"):
        click.echo(f"{inst['id']}\t{inst['status']}\t{inst.get('phoneNumber') or '-'}\t{inst['name']}")


@instances.command("create")
@click.argument("name")
@click.option("--webhook-url", default=None, help="where events are POSTed")
@click.option("--event", "events", multiple=True, help="event to deliver (repeat; default all)")
@_api_options
def instances_create(name: str, webhook_url: str | None, events: tuple[str, ...], url: str,
                     api_key: str | None) -> None:
    """Create an instance."""
    body: dict[str, Any] = {"name": name}
    if webhook_url or events:
        body["webhook"] = {"url": webhook_url, "events": list(events)}
    out = Api(url, api_key).call("POST", "/instances", json=body)
    click.echo(json.dumps(out["instance"], indent=2))


@instances.command("delete")
@click.argument("instance_id")
@_api_options
def instances_delete(instance_id: str, url: str, api_key: str | None) -> None:
    """Delete an instance (logs out and purges its records)."""
    out = Api(url, api_key).call("DELETE", f"/instances/{instance_id}")
    if isinstance(out, dict) and out.get("deleted") is False:  # deleting is idempotent over HTTP
        raise click.ClickException(f"no instance {instance_id}")
    click.echo(f"deleted {instance_id}")


@main.command()
@click.argument("instance_id")
@click.argument("chat_id")
@click.argument("text", required=False)
@click.option("--poll", "options", multiple=True, help="send a poll with TEXT as caption; repeat per option")
@click.option("--multiple", is_flag=True, help="poll allows several answers")
@click.option("--key", "idempotency_key", default=None, help="idempotency key")
@_api_options
def send(instance_id: str, chat_id: str, text: str | None, options: tuple[str, ...], multiple: bool,
         idempotency_key: str | None, url: str, api_key: str | None) -> None:
    """Enqueue a text message (or a poll with --poll) through a running hub."""
    if text is None:
        text = sys.stdin.read()
    headers = {"Idempotency-Key": idempotency_key} if idempotency_key else {}
    if options:
        path, body = "create-poll", {"chatId": chat_id, "caption": text, "options": list(options),
                                     "multipleAnswers": multiple}
    else:
        path, body = "send-message", {"chatId": chat_id, "message": text}
    out = Api(url, api_key).call("POST", f"/instances/{instance_id}/client/action/{path}", json=body,
                                 headers=headers)
    click.echo(json.dumps(out, indent=2, ensure_ascii=False))


@main.command()
@_api_options
def status(url: str, api_key: str | None) -> None:
    """A table of instances: state, phone, queue depth, sent in the last hour, last error."""
    api = Api(url, api_key)
    rows = [("ID", "STATE", "PHONE", "QUEUE", "SENT1H", "LAST ERROR")]
    for inst in api.call("GET", "/instances"):
        st = api.call("GET", f"/instances/{inst['id']}/status")
        state = st["instance"]["state"] + (" (degraded)" if st.get("degraded") else "")
        rows.append((inst["id"], state, st["client"]["phoneNumber"] or "-",
                     str(st["queue"]["depth"]), str(st["counters"]["sent1h"]), (st.get("lastError") or "-")[:40]))
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    for r in rows:
        click.echo("  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip())


@main.command()
@click.argument("instance_id")
@_api_options
def qr(instance_id: str, url: str, api_key: str | None) -> None:
    """Print the instance's current QR code in the terminal."""
    import segno

    out = Api(url, api_key).call("GET", f"/instances/{instance_id}/client/qr")
    code = out["qrCode"]["data"].get("qr_string")
    if not code:
        raise click.ClickException(out.get("message") or "no QR code to show")
    segno.make(code, error="l").terminal(compact=True)


@main.command()
@click.argument("instance_id")
@click.option("--hard", is_flag=True, help="tear the engine down and start it again (default: reconnect)")
@_api_options
def restart(instance_id: str, hard: bool, url: str, api_key: str | None) -> None:
    """Restart an instance (counts against its restart budget); returns at once."""
    out = Api(url, api_key).call("POST", f"/instances/{instance_id}/restart", json={"type": "hard" if hard else "soft"})
    click.echo(f"{out.get('message', 'restart initiated')}; state now {out.get('currentState', '?')}")


@main.command()
@click.argument("instance_id")
@_api_options
def logout(instance_id: str, url: str, api_key: str | None) -> None:
    """Log the instance out of WhatsApp. Like the existing wa-hub, the hub then deletes it (create it again to
    link a phone) and reports the queued messages it dropped; with WAAPI_ENVELOPE=true it keeps it as logged_out."""
    out = Api(url, api_key).call("POST", f"/instances/{instance_id}/client/action/logout")
    dropped = out.get("droppedFromOutbound")
    click.echo(f"logged out {instance_id}" + (f"; {dropped} queued message(s) dropped" if dropped else ""))


@main.command("pairing-code")
@click.argument("instance_id")
@click.argument("phone")
@_api_options
def pairing_code(instance_id: str, phone: str, url: str, api_key: str | None) -> None:
    """Ask for a pairing code to link PHONE (international digits) without scanning a QR."""
    out = Api(url, api_key).call("POST", f"/instances/{instance_id}/client/action/request-pairing-code",
                                 json={"phoneNumber": phone})
    code = (out.get("data") or {}).get("pairingCode") or out.get("pairingCode")
    if not code:
        raise click.ClickException("the hub answered without a pairing code")
    click.echo(f"pairing code: {code}")
    click.echo("on the phone: WhatsApp > Linked devices > Link a device > Link with phone number instead", err=True)


@main.command()
@click.argument("instance_id")
@click.option("--phone", default=None, help="phone number of the simulated account (default: a made-up one)")
@_api_options
def scan(instance_id: str, phone: str | None, url: str, api_key: str | None) -> None:
    """Sandbox engine only: "scan" the instance's QR with a simulated phone, which links it."""
    Api(url, api_key).call("POST", f"/sandbox/instances/{instance_id}/scan", json={"phone": phone} if phone else {})
    click.echo(f"scanned {instance_id}: it links in a moment (wa-hub status shows when it is ready)")


@main.command("import-node")
@click.argument("directory", type=click.Path(exists=True, file_okay=False, path_type=Path))
@click.option("--data-dir", envvar="DATA_DIR", default="./data", show_default=True, help="this hub's data directory")
def import_node(directory: Path, data_dir: str) -> None:
    """Import the existing (Node) wa-hub's instances and sent keys from DIRECTORY (run with the hub stopped)."""
    import asyncio

    from pydantic import ValidationError

    from wahub import config, nodeimport
    from wahub.runtime.clock import SystemClock
    from wahub.runtime.compose import default_store

    try:
        settings = config.load(data_dir=data_dir, insecure_no_api_key=True)
    except ValidationError as exc:
        click.echo(config.describe_error(exc), err=True)
        sys.exit(2)
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    try:
        files = nodeimport.read_files(*nodeimport.source_paths(settings, directory))
    except ValueError as exc:
        raise click.ClickException(str(exc)) from None
    store = default_store(settings)

    async def run() -> nodeimport.ImportReport:
        try:
            return await nodeimport.import_node(store, SystemClock(), files, engine=settings.engine)
        finally:
            await store.close()

    report = asyncio.run(run())
    for line in report.lines():
        click.echo(line)


if __name__ == "__main__":  # pragma: no cover
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    main()
