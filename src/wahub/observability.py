"""Structured logs (structlog) and Prometheus metrics.

Logs are events: JSON lines with ``event``, ``instance_id``, ``queue_id``, ``request_id`` where
they apply; human-readable when stderr is a terminal. Nothing secret (API keys, webhook
secrets, session data) and no message body is ever logged at info level.
"""

from __future__ import annotations

import asyncio
import atexit
import json
import logging
import sys
import threading
from collections.abc import Iterable, MutableMapping
from typing import Any, TextIO

import structlog
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest

from wahub import logredact

_REDACT_KEYS = {"api_key", "apikey", "authorization", "secret", "webhook_secret", "token", "password",
                "message", "text", "body", "caption"}
_HANDLER_MARK = "_wahub_handler"


class _Clean:
    """Key-based redaction, ``format_exc_info``, secret scrubbing and ``logredact.mask_values``, in
    that order, as one processor (one call and one pass over the values on every line).

    * Fields whose name says they are secret (:data:`_REDACT_KEYS`) become ``[redacted]``, except at
      debug level.
    * Every occurrence of a configured secret (API key, webhook secret) in any string value is
      replaced, at every level, debug included: a second line of defence behind the names, for a
      secret that ends up inside an error message or a URL.
    * Phone numbers and SQL parameters inside text are masked (:mod:`wahub.logredact`).
    """

    def __init__(self, secrets: Iterable[str | None]) -> None:
        self.secrets = sorted({s for s in secrets if s and len(s) >= 4}, key=len, reverse=True)

    def __call__(self, logger: Any, method: str, event_dict: MutableMapping[str, Any]) -> MutableMapping[str, Any]:
        if method != "debug":
            for key in list(event_dict):
                if key.lower() in _REDACT_KEYS:
                    event_dict[key] = "[redacted]"
        if "exc_info" in event_dict:
            event_dict = structlog.processors.format_exc_info(logger, method, event_dict)
        secrets, own = self.secrets, logredact.OWN_KEYS
        for key, value in event_dict.items():
            if isinstance(value, str):
                for secret in secrets:
                    if secret in value:
                        value = value.replace(secret, "[redacted]")
                event_dict[key] = value if key in own else logredact.mask_text(value)
        return event_dict


def _json_fallback(obj: Any) -> Any:
    """What JSON cannot carry, as structlog's renderer shows it: its ``__structlog__()`` or ``repr``."""
    try:
        return obj.__structlog__()
    except AttributeError:
        return repr(obj)


_ENCODER = json.JSONEncoder(default=_json_fallback)  # json.dumps(obj, default=...) builds one per call


def _dumps(obj: Any, **_kw: Any) -> str:
    return _ENCODER.encode(obj)


class TurnWriter:
    """Writes log lines to ``file``, those at info and debug once per event-loop turn.

    Why: each line written on its own is one ``write`` system call, 41 % of what an info line costs,
    and a batch of enqueues logs one line per item in the same turn (docs/PERFORMANCE.md, "The database
    thread's wait for the GIL"). A line from a thread that runs an event loop is held, and the held
    lines go out in one write from a callback the loop runs right after the current turn (``call_soon``).
    Warnings and worse, lines from other threads and lines with no running loop are written at once,
    after whatever is held, so lines keep their order. A loop that stopped before its callback ran does
    not strand the lines: the next line held on another loop schedules a flush there. The server writes
    what is held when the hub has stopped and at exit (:func:`flush_logs`); a SIGKILL can lose the lines
    of one loop turn (well under a millisecond).
    """

    def __init__(self, file: TextIO) -> None:
        self.file = file
        self._held: list[str] = []
        self._lock = threading.Lock()
        self._on: asyncio.AbstractEventLoop | None = None  # the loop a flush is scheduled on

    def hold(self, line: str) -> None:
        """Write ``line`` at the end of this loop turn (at once outside a loop)."""
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            self.now(line)
            return
        with self._lock:
            self._held.append(line)
            if self._on is loop:
                return
            self._on = loop
        try:
            loop.call_soon(self.flush)
        except RuntimeError:  # the loop is closing: no later turn will come
            self.flush()

    def now(self, line: str) -> None:
        """Write what is held, then ``line``, at once."""
        with self._lock:
            self._held.append(line)
            self._write()

    def flush(self) -> None:
        """Write what is held."""
        with self._lock:
            self._write()

    def _write(self) -> None:
        self._on = None
        if not self._held:
            return
        text = "\n".join(self._held) + "\n"
        self._held.clear()
        try:
            self.file.write(text)
            self.file.flush()
        except Exception:  # noqa: BLE001 - a closed or broken stream: logging never takes the hub down
            pass


_writer: TurnWriter | None = None  # the one configure_logging(per_turn=True) installed last


def flush_logs() -> None:
    """Write the log lines held for the end of the loop's turn (the server calls it as the hub stops
    and at exit; a no-op when lines are written at once)."""
    if _writer is not None:
        _writer.flush()


atexit.register(flush_logs)


class _TurnLogger:
    """structlog's logger over a :class:`TurnWriter`: debug and info held to the turn's end, the rest now."""

    def __init__(self, writer: TurnWriter) -> None:
        self.debug = self.info = self.msg = writer.hold
        self.warning = self.warn = self.error = self.err = self.critical = self.exception = writer.now
        self.fatal = self.failure = self.log = writer.now


class _TurnHandler(logging.Handler):
    """The standard library's records through the same :class:`TurnWriter` (order kept with structlog's)."""

    def __init__(self, writer: TurnWriter) -> None:
        super().__init__()
        self._writer = writer

    def emit(self, record: logging.LogRecord) -> None:
        try:
            line = self.format(record)
        except Exception:  # noqa: BLE001 - as logging.StreamHandler: report, never raise
            self.handleError(record)
            return
        (self._writer.hold if record.levelno < logging.WARNING else self._writer.now)(line)


def configure_logging(level: str = "info", fmt: str = "auto", *, stream: TextIO | None = None,
                      secrets: Iterable[str | None] = (), cache: bool = False, per_turn: bool = False) -> None:
    """Configure structlog and the standard library logging (one JSON line per event, or console).

    ``fmt`` ``auto`` renders for humans when ``stream`` (default stderr) is a terminal, else JSON.
    Standard-library records (uvicorn, libraries) go through the same processors, so they are JSON
    too and get the same redaction. Every string in ``secrets`` is masked wherever it appears.

    ``cache`` (the server passes True) binds each module's logger once, on its first use, instead
    of on every call; that is a third of an info line's cost, but a later call of this function then
    no longer reaches loggers already used, so it is for a process that configures logging once.

    ``per_turn`` (the server passes True) writes info and debug lines once per event-loop turn
    (:class:`TurnWriter`) instead of one write each.
    """
    out = stream if stream is not None else sys.stderr
    lvl = getattr(logging, level.upper(), logging.INFO)
    isatty = getattr(out, "isatty", None)
    use_console = fmt == "console" or (fmt == "auto" and callable(isatty) and bool(isatty()))
    stamp = structlog.processors.TimeStamper(fmt="iso", utc=True)
    clean = _Clean(secrets)
    renderer: Any = structlog.dev.ConsoleRenderer() if use_console else structlog.processors.JSONRenderer(_dumps)
    global _writer
    flush_logs()
    writer = _writer = TurnWriter(out) if per_turn else None
    structlog.configure(
        processors=[structlog.contextvars.merge_contextvars, structlog.processors.add_log_level, stamp, clean,
                    renderer],
        wrapper_class=structlog.make_filtering_bound_logger(lvl),
        logger_factory=(lambda *_: _TurnLogger(writer)) if writer else structlog.PrintLoggerFactory(file=out),
        cache_logger_on_first_use=cache,
    )
    handler = _TurnHandler(writer) if writer else logging.StreamHandler(out)
    handler.setFormatter(structlog.stdlib.ProcessorFormatter(
        foreign_pre_chain=[structlog.contextvars.merge_contextvars, structlog.processors.add_log_level,
                           structlog.stdlib.add_logger_name, stamp],
        processors=[structlog.stdlib.ProcessorFormatter.remove_processors_meta, clean, renderer]))
    setattr(handler, _HANDLER_MARK, True)
    root = logging.getLogger()
    for old in [h for h in root.handlers if getattr(h, _HANDLER_MARK, False)]:
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(max(lvl, logging.WARNING))
    for noisy in ("uvicorn.access", "httpx", "httpcore", "sqlalchemy.engine", "alembic", "aiosqlite"):
        logging.getLogger(noisy).setLevel(logging.WARNING)


class Metrics:
    """The hub's Prometheus series: counters and histograms on a registry of their own (one per hub),
    and the per-instance fleet gauges kept as plain values (see :meth:`render`)."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        r = self.registry
        self.sends = Counter("wahub_sends_total", "Outbox sends by outcome", ["instance", "outcome"], registry=r)
        self.deferrals = Counter("wahub_send_deferrals_total", "Send-loop deferrals by reason",
                                 ["instance", "reason"], registry=r)
        self.disconnects = Counter("wahub_disconnects_total", "Transitions into disconnected", ["instance"],
                                   registry=r)
        self.restarts = Counter("wahub_restarts_total", "Restarts by kind", ["instance", "kind"], registry=r)
        self.webhooks = Counter("wahub_webhook_deliveries_total", "Webhook attempts by outcome",
                                ["instance", "outcome"], registry=r)
        self.webhook_latency = Histogram("wahub_webhook_delivery_seconds", "Webhook attempt latency",
                                         ["instance"], registry=r)
        self.http_requests = Counter("wahub_http_requests_total", "HTTP requests", ["method", "route", "status"],
                                     registry=r)
        self.http_latency = Histogram("wahub_http_request_seconds", "HTTP request latency", ["method", "route"],
                                      registry=r)
        self.degraded = Gauge("wahub_instance_degraded", "1 while sends get no server ack or receipt (zombie session)",
                              ["instance"], registry=r)
        self.store_fault = Gauge("wahub_store_fault", "1 while the store cannot write", registry=r)
        self.held_events = Gauge("wahub_engine_events_held", "Engine events held until the store takes them",
                                 registry=r)
        self.claim_lead = Gauge("wahub_send_claim_lead_ms", "How long before its pacing instant a send loop starts "
                                "its claim now (ms): the longest claim of the last 5 minutes, capped by "
                                "SEND_CLAIM_LEAD_MS", registry=r)
        self.store_retries = Counter("wahub_store_retries_total", "Engine-event writes retried after a store fault",
                                     registry=r)
        self._states: dict[str, tuple[str, tuple[str, ...]]] = {}
        self._queues: dict[str, tuple[dict[str, int], tuple[str, ...], float]] = {}
        self._labels: dict[str, str] = {}

    def deferred(self, instance_id: str, reason: str) -> None:
        """Count a send-loop deferral (``interval``, ``minute_limit``, ``hour_limit``, ``backoff``)."""
        self.deferrals.labels(instance_id, reason).inc()

    def send_outcome(self, instance_id: str, outcome: str) -> None:
        """Count one send outcome (``sent``, ``failed``, ``retry``, ``uncertain``, ``reconciled``)."""
        self.sends.labels(instance_id, outcome).inc()

    def webhook_attempt(self, instance_id: str, outcome: str, seconds: float) -> None:
        """Count one webhook attempt (``delivered``, ``retry``, or ``dead`` when it made a dead letter)."""
        self.webhooks.labels(instance_id, outcome).inc()
        self.webhook_latency.labels(instance_id).observe(seconds)

    def set_state(self, instance_id: str, state: str, all_states: list[str]) -> None:
        """Set the one-hot state gauge of an instance."""
        self._states[instance_id] = (state, tuple(all_states))

    def set_queue(self, instance_id: str, by_status: dict[str, int], all_statuses: list[str],
                  oldest_age_s: float) -> None:
        """Set an instance's queue gauges: items by status (0 for the absent ones), oldest open item's age (s)."""
        self._queues[instance_id] = (dict(by_status), tuple(all_statuses), oldest_age_s)

    def forget(self, instance_id: str) -> None:
        """Drop the series of a deleted instance."""
        self._states.pop(instance_id, None)
        self._queues.pop(instance_id, None)
        self._labels.pop(instance_id, None)
        for metric in (self.sends, self.deferrals, self.disconnects, self.restarts, self.webhooks,
                       self.webhook_latency, self.degraded):
            for labels in list(metric._metrics):  # prometheus_client keeps children by label tuple
                if labels and labels[0] == instance_id:
                    metric.remove(*labels)

    def render(self) -> bytes:
        """The whole exposition in the Prometheus text format (``text/plain; version=0.0.4``).

        The fleet gauges (``wahub_instance_state``, ``wahub_queue_items``, ``wahub_queue_oldest_age_seconds``,
        ``wahub_uncertain_items``) are ~17 samples per instance: 17,000 at 1,000 instances, which the
        client library's generic formatter takes 200-400 ms to write on a busy 2-core machine. They are
        written here from plain values with each instance's label text escaped once and cached.
        """
        out = [generate_latest(self.registry).decode("utf-8")]
        label = self._label
        lines = ["# HELP wahub_instance_state 1 for the instance's current state\n",
                 "# TYPE wahub_instance_state gauge\n"]
        for iid, (state, states) in self._states.items():
            prefix = f'wahub_instance_state{{instance="{label(iid)}",state="'
            lines.extend(f'{prefix}{s}"}} {"1.0" if s == state else "0.0"}\n' for s in states)
        lines += ["# HELP wahub_queue_items Outbox items by status\n", "# TYPE wahub_queue_items gauge\n"]
        for iid, (by_status, statuses, _) in self._queues.items():
            prefix = f'wahub_queue_items{{instance="{label(iid)}",status="'
            lines.extend(f'{prefix}{s}"}} {float(by_status.get(s, 0))}\n' for s in statuses)
        lines += ["# HELP wahub_queue_oldest_age_seconds Age of the oldest open item\n",
                  "# TYPE wahub_queue_oldest_age_seconds gauge\n"]
        lines.extend(f'wahub_queue_oldest_age_seconds{{instance="{label(iid)}"}} {float(age)}\n'
                     for iid, (_, _, age) in self._queues.items())
        lines += ["# HELP wahub_uncertain_items Items whose delivery is unknown\n",
                  "# TYPE wahub_uncertain_items gauge\n"]
        lines.extend(f'wahub_uncertain_items{{instance="{label(iid)}"}} {float(q[0].get("uncertain", 0))}\n'
                     for iid, q in self._queues.items())
        out.append("".join(lines))
        return "".join(out).encode("utf-8")

    def _label(self, instance_id: str) -> str:
        """A label value escaped for the text format (backslash, quote, newline), cached per instance."""
        text = self._labels.get(instance_id)
        if text is None:
            text = instance_id.replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')
            self._labels[instance_id] = text
        return text
