"""Structured logs (structlog) and Prometheus metrics.

Logs are events: JSON lines with ``event``, ``instance_id``, ``queue_id``, ``request_id`` where
they apply; human-readable when stderr is a terminal. Nothing secret (API keys, webhook
secrets, session data) and no message body is ever logged at info level.
"""

from __future__ import annotations

import logging
import sys
from typing import Any

import structlog
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

_REDACT_KEYS = {"api_key", "apikey", "authorization", "secret", "webhook_secret", "token", "password",
                "message", "text", "body", "caption"}


def _redact(_logger: Any, method: str, event_dict: dict[str, Any]) -> dict[str, Any]:
    if method in ("debug",):
        return event_dict
    for key in list(event_dict):
        if key.lower() in _REDACT_KEYS:
            event_dict[key] = "[redacted]"
    return event_dict


def configure_logging(level: str = "info", fmt: str = "auto") -> None:
    """Configure structlog and the standard library logging once per process."""
    lvl = getattr(logging, level.upper(), logging.INFO)
    use_console = fmt == "console" or (fmt == "auto" and sys.stderr.isatty())
    processors: list[Any] = [
        structlog.contextvars.merge_contextvars,
        structlog.processors.add_log_level,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
        _redact,
        structlog.processors.format_exc_info,
    ]
    renderer: Any = structlog.dev.ConsoleRenderer() if use_console else structlog.processors.JSONRenderer()
    structlog.configure(
        processors=[*processors, renderer],
        wrapper_class=structlog.make_filtering_bound_logger(lvl),
        logger_factory=structlog.PrintLoggerFactory(file=sys.stderr),
        cache_logger_on_first_use=False,
    )
    logging.basicConfig(level=max(lvl, logging.WARNING), stream=sys.stderr, format="%(levelname)s %(name)s %(message)s")
    for noisy in ("uvicorn.access", "httpx", "httpcore", "sqlalchemy.engine", "alembic", "aiosqlite"):
        logging.getLogger(noisy).setLevel(logging.WARNING)


class Metrics:
    """The hub's Prometheus series, on a registry of their own (one per hub)."""

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
        self.state = Gauge("wahub_instance_state", "1 for the instance's current state", ["instance", "state"],
                           registry=r)
        self.queue_depth = Gauge("wahub_queue_items", "Outbox items by status", ["instance", "status"], registry=r)
        self.oldest_queued = Gauge("wahub_queue_oldest_age_seconds", "Age of the oldest open item", ["instance"],
                                   registry=r)
        self.uncertain = Gauge("wahub_uncertain_items", "Items whose delivery is unknown", ["instance"], registry=r)
        self.http_requests = Counter("wahub_http_requests_total", "HTTP requests", ["method", "route", "status"],
                                     registry=r)
        self.http_latency = Histogram("wahub_http_request_seconds", "HTTP request latency", ["method", "route"],
                                      registry=r)

    def deferred(self, instance_id: str, reason: str) -> None:
        """Count a send-loop deferral (``interval``, ``minute_limit``, ``hour_limit``, ``backoff``)."""
        self.deferrals.labels(instance_id, reason).inc()

    def send_outcome(self, instance_id: str, outcome: str) -> None:
        """Count one send outcome (``sent``, ``failed``, ``retry``, ``uncertain``)."""
        self.sends.labels(instance_id, outcome).inc()

    def webhook_attempt(self, instance_id: str, outcome: str, seconds: float) -> None:
        """Count one webhook attempt and its latency."""
        self.webhooks.labels(instance_id, outcome).inc()
        self.webhook_latency.labels(instance_id).observe(seconds)

    def set_state(self, instance_id: str, state: str, all_states: list[str]) -> None:
        """Set the one-hot state gauge of an instance."""
        for s in all_states:
            self.state.labels(instance_id, s).set(1 if s == state else 0)

    def forget(self, instance_id: str) -> None:
        """Drop the series of a deleted instance."""
        for metric in (self.sends, self.deferrals, self.disconnects, self.restarts, self.webhooks,
                       self.webhook_latency, self.state, self.queue_depth, self.oldest_queued, self.uncertain):
            for labels in list(metric._metrics):  # prometheus_client keeps children by label tuple
                if labels and labels[0] == instance_id:
                    metric.remove(*labels)
