"""What an engine can read and manage besides sending: chats, contacts, messages, groups.

An engine offers a :class:`Directory` (``Engine.directory()``); the runtime calls
:meth:`Directory.call` with an action of :data:`wahub.domain.directory.ACTIONS` and the arguments
:func:`wahub.domain.directory.parse` produced. An action the engine cannot do is absent from
:attr:`Directory.actions` and :meth:`Directory.why_not` says why (the API answers 501 with it).

Answers are JSON-able values in wa-hub's neutral shapes (ids canonical, times epoch ms); the API
presents them in the WaAPI/whatsapp-web.js shapes:

* chat ``{"id", "name", "isGroup", "unreadCount", "timestamp", "archived", "pinned", "mutedUntil"
  (ms, -1 for ever, None), "readOnly"}``
* message ``{"id", "chatId", "from", "fromMe", "type", "body", "timestamp", "hasMedia", "ack"}``
* contact ``{"id", "number", "name", "pushName", "isBusiness", "isMe", "isMyContact", "isBlocked",
  "isWAContact", "lid"}``
* group ``{"id", "subject", "description", "owner", "creation", "announce", "locked",
  "participants": [{"id", "isAdmin", "isSuperAdmin"}]}``
* number lookup ``{"query", "jid" (None: not on WhatsApp)}``

Calls raise :class:`DirectoryUnsupported` (501), :class:`DirectoryNotFound` (404: no such chat,
message, group or invite), ``EngineError`` (the engine failed or is not connected).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from wahub.domain.errors import EngineError


class DirectoryUnsupported(EngineError):
    """The engine cannot do this action (the message says why)."""


class DirectoryNotFound(EngineError):
    """The chat, message, group or invite named in the call does not exist for this account."""


class DirectoryRefused(EngineError):
    """WhatsApp refused the action (not an admin, not a participant, invite revoked…); the message says why."""


class Directory:
    """An engine's reads, chat settings and group management; the base class can do nothing."""

    actions: frozenset[str] = frozenset()
    """Action names (``wahub.domain.directory.ACTIONS`` keys) this directory carries out."""

    engine_name = "this engine"

    def why_not(self, action: str) -> str:
        """Why ``action`` is not available here (the 501 answer's message)."""
        return f"{self.engine_name} cannot do {action}"

    async def call(self, action: str, args: Mapping[str, Any]) -> Any:
        """Carry out ``action``; see the module docstring for answers and errors."""
        raise DirectoryUnsupported(self.why_not(action))


NO_DIRECTORY = Directory()
"""The directory of an engine that has none: every action is unsupported."""
