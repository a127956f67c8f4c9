"""Reads, chat settings and groups: one engine call per request, with a timeout, never through the outbox.

Nothing here puts a message in a chat, so none of it is queued, paced or retried: the request waits
for the engine (at most ``READ_TIMEOUT_MS``) and answers what it said. The instance must be ``ready``
(409 naming its state otherwise); an action its engine cannot do answers 501 with the reason.
Error mapping: the engine's ``DirectoryUnsupported`` → :class:`NotSupported` (501),
``DirectoryNotFound`` → :class:`NotFound` (404), ``DirectoryRefused`` → :class:`Conflict` (409),
any other engine failure or the timeout → :class:`ServiceUnavailable` (503).
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from typing import Any

import structlog

from wahub.domain import directory
from wahub.domain.errors import Conflict, EngineError, NotFound, NotSupported, ServiceUnavailable
from wahub.domain.lifecycle import State
from wahub.engines.directory import DirectoryNotFound, DirectoryRefused, DirectoryUnsupported
from wahub.runtime.registry import Registry

log = structlog.get_logger("wahub.directory")


class DirectoryRoom:
    """Runs :data:`wahub.domain.directory.ACTIONS` against an instance's engine."""

    def __init__(self, registry: Registry, *, timeout_ms: int) -> None:
        self.registry = registry
        self.timeout_ms = timeout_ms

    async def run(self, instance_id: str, name: str, body: Mapping[str, Any]) -> Any:
        """Check ``body`` for action ``name`` and carry it out; the engine's neutral answer.

        Raises NotFound (instance, or the thing asked about), InvalidInput naming the field, Conflict
        (not ready, or WhatsApp refused), NotSupported (501) or ServiceUnavailable (engine failed, timeout).
        """
        action = directory.ACTIONS.get(name)
        if action is None:
            raise NotFound(f"unknown action {name}")
        rt = self.registry.get_rt(instance_id)
        args = directory.parse(action, body, default_country_code=rt.record.default_country_code)
        if action.kind == "local":
            return local(name, args)
        rt = self.registry.engine_rt(instance_id)
        engine = rt.engine
        if rt.state != State.READY or engine is None:
            raise Conflict(f"instance is {rt.state.value}, not ready: {name} needs a connected account",
                           instanceState=rt.state.value)
        book = engine.directory()
        if not book.actions:
            raise NotSupported(f"the {rt.record.engine} engine offers no reads, chat settings or group management "
                               f"({name} is not available)", engine=rt.record.engine)
        if name not in book.actions:
            raise NotSupported(book.why_not(name), engine=rt.record.engine)
        try:
            async with asyncio.timeout(self.timeout_ms / 1000):
                return await book.call(name, args)
        except DirectoryUnsupported as exc:
            raise NotSupported(str(exc), engine=rt.record.engine) from exc
        except DirectoryNotFound as exc:
            raise NotFound(str(exc)) from exc
        except DirectoryRefused as exc:
            raise Conflict(str(exc)) from exc
        except EngineError as exc:
            log.warning("directory_call_failed", instance_id=rt.id, action=name, error=str(exc))
            raise ServiceUnavailable(f"{name} failed: {exc}") from exc
        except TimeoutError as exc:
            log.warning("directory_call_timeout", instance_id=rt.id, action=name, timeout_ms=self.timeout_ms)
            raise ServiceUnavailable(f"the engine did not answer {name} within {self.timeout_ms} ms") from exc


def local(name: str, args: Mapping[str, Any]) -> Any:
    """The answer of an action that needs no engine (number formatting, the timer list)."""
    if name == "get-formatted-number":
        return directory.formatted(args["number"])
    if name == "get-country-code":
        from wahub.domain import chatid

        return chatid.country_code(args["number"])
    return list(directory.DISAPPEARING_DURATIONS)
