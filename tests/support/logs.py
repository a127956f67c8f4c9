"""Logging configured for one test and put back afterwards."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager

import structlog

from wahub import observability


@contextmanager
def restored_logging() -> Iterator[None]:
    """Let the body call :func:`wahub.observability.configure_logging` freely; on exit, structlog's
    configuration, the root logger's level and handlers and the per-turn writer are what they were."""
    saved = structlog.get_config()
    root = logging.getLogger()
    saved_level, saved_handlers = root.level, list(root.handlers)
    saved_writer = observability._writer
    try:
        yield
    finally:
        observability.flush_logs()
        structlog.configure(**saved)
        root.handlers[:] = saved_handlers
        root.setLevel(saved_level)
        observability._writer = saved_writer
