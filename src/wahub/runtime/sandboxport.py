"""The sandbox control port: what the hub and the sandbox API may do to the simulated WhatsApp.

Implemented by :class:`wahub.engines.sandboxworld.SandboxWorld`; ``Hub.sandbox`` holds it (None with a
real engine), so the API drives the simulation through these methods only, typed, never the engine.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Protocol


class SandboxDelivery(Protocol):
    """One send that reached the simulated WhatsApp."""

    def as_dict(self) -> dict[str, Any]:
        """``{messageId, chatId, kind, at (epoch ms), text, caption, options, multipleAnswers}``."""
        ...


class SandboxPhone(Protocol):
    """The simulated device behind one instance."""

    @property
    def deliveries(self) -> Sequence[SandboxDelivery]:
        """Every send that reached it, oldest first."""
        ...


class SandboxControl(Protocol):
    """Scan, inject inbound traffic, script faults; each raises InvalidInput for a bad argument."""

    def phone(self, instance_id: str) -> SandboxPhone:
        """The phone of an instance (created on first use)."""
        ...

    def forget(self, instance_id: str) -> None:
        """Drop the phone and its session (the instance was deleted)."""
        ...

    async def scan(self, instance_id: str, phone: str | None = None, push_name: str | None = None) -> None:
        """Scan the QR shown: the instance links and becomes ready."""
        ...

    async def inject_message(self, instance_id: str, sender: str, text: str, *, message_id: str | None = None,
                             sender_alt: str | None = None, chat_id: str | None = None, **content: Any) -> str:
        """Deliver an inbound message (``content``: kind, caption, mimetype, location…); returns its id."""
        ...

    async def inject_reaction(self, instance_id: str, sender: str, target_message_id: str, emoji: str, *,
                              chat_id: str | None = None) -> str:
        """Deliver a reaction (``emoji`` "" removes it); returns the reaction's id."""
        ...

    async def inject_edit(self, instance_id: str, sender: str, original_message_id: str, text: str, *,
                          chat_id: str | None = None) -> None:
        """Deliver an edit: ``original_message_id`` now reads ``text``."""
        ...

    async def inject_revoke(self, instance_id: str, sender: str, original_message_id: str, *,
                            chat_id: str | None = None) -> None:
        """Deliver a delete-for-everyone of ``original_message_id``."""
        ...

    async def inject_vote(self, instance_id: str, poll_message_id: str, voter: str, selected: list[str], *,
                          timestamp: int | None = None, voter_alt: str | None = None,
                          as_hashes: bool = False, decrypt_failed: bool = False) -> None:
        """Deliver a poll vote (``timestamp`` epoch ms); ``decrypt_failed``: one whose choice cannot be read."""
        ...

    async def inject_ack(self, instance_id: str, message_ids: list[str], ack: str) -> None:
        """Deliver a receipt (delivered | read | played)."""
        ...

    async def fault(self, instance_id: str, kind: str, params: dict[str, Any]) -> None:
        """Script a fault (disconnect, auth_failure, temporary_ban, send_error, ...)."""
        ...
