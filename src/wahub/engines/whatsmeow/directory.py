"""The whatsmeow engine's directory: each action is one ``directory`` command to the worker.

The worker runs it with neonize (:mod:`~wahub.engines.whatsmeow.workerdirectory`, which also names
what whatsmeow cannot do and why) and answers ``{"value"}`` or ``{"refused", "message"}``; this
side turns a refusal into the matching :mod:`wahub.engines.directory` error.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from typing import Any

from wahub.engines.directory import Directory, DirectoryNotFound, DirectoryRefused, DirectoryUnsupported
from wahub.engines.whatsmeow import workerdirectory

Query = Callable[[str, dict[str, Any]], Awaitable[dict[str, Any]]]
REFUSALS: dict[str, type[Exception]] = {"not_found": DirectoryNotFound, "refused": DirectoryRefused,
                                        "unsupported": DirectoryUnsupported}


class WhatsmeowDirectory(Directory):
    """Directory actions through the worker's ``directory`` command."""

    actions = workerdirectory.ACTIONS
    engine_name = "the whatsmeow engine"

    def __init__(self, query: Query) -> None:
        self.query = query

    def why_not(self, action: str) -> str:
        reason = workerdirectory.UNSUPPORTED.get(action)
        return f"{self.engine_name} cannot do {action}" + (f": {reason}" if reason else "")

    async def call(self, action: str, args: Mapping[str, Any]) -> Any:
        if action not in self.actions:
            raise DirectoryUnsupported(self.why_not(action))
        answer = await self.query("directory", {"action": action, "args": {**args, "__action": action}})
        refused = answer.get("refused")
        if refused is not None:
            raise REFUSALS.get(str(refused), DirectoryRefused)(str(answer.get("message") or refused))
        return answer.get("value")
