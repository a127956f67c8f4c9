"""Builds :class:`~wahub.engines.whatsmeow.engine.WhatsmeowEngine` instances, one worker each."""

from __future__ import annotations

import weakref
from pathlib import Path

from wahub.domain.clock import Clock
from wahub.engines import base
from wahub.engines.whatsmeow.engine import WhatsmeowEngine, WorkerOptions, remove_session_dir


class WhatsmeowFactory(base.EngineFactory):
    """Engines whose session databases live in ``<sessions_dir>/<instance_id>/``."""

    name = "whatsmeow"

    def __init__(self, sessions_dir: Path, *, clock: Clock, options: WorkerOptions | None = None) -> None:
        self.sessions_dir = Path(sessions_dir).resolve()
        self.clock = clock
        self.options = options or WorkerOptions()
        self._engines: weakref.WeakSet[WhatsmeowEngine] = weakref.WeakSet()
        self.launcher = self.options.launcher()  # one worker template shared by this factory's engines

    def session_dir(self, instance_id: str) -> Path:
        """Where ``instance_id``'s whatsmeow session database lives."""
        return self.sessions_dir / instance_id

    def create(self, instance_id: str, sink: base.EventSink) -> WhatsmeowEngine:
        engine = WhatsmeowEngine(instance_id, sink, session_dir=self.session_dir(instance_id),
                                 clock=self.clock, options=self.options, launcher=self.launcher)
        self._engines.add(engine)
        return engine

    async def remove_session(self, instance_id: str) -> None:
        """Stop any worker of ``instance_id`` and delete its session directory (instance deleted)."""
        for engine in list(self._engines):
            if engine.instance_id == instance_id and engine.running:
                await engine.stop()
        remove_session_dir(self.session_dir(instance_id))

    async def close(self) -> None:
        """Stop any worker still running (the supervisors normally stopped them already), then the worker template."""
        for engine in list(self._engines):
            if engine.running:
                await engine.stop()
        await self.launcher.close()
