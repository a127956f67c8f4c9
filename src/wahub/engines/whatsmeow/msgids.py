"""Caller-chosen message ids on top of neonize 0.5.2, which cannot send under a chosen id.

whatsmeow's ``SendMessage`` takes the id in ``SendRequestExtra.ID``, but neonize 0.5.2's exported
Go ``SendMessage`` never passes an extra (``send_message`` has no id parameter; ``SendRequestExtra``
only reaches ``SendFBMessage``). The wire id is chosen by whatsmeow inside the call.

So the engine keeps the contract with an alias: it hands out an id in whatsmeow's shape
(:func:`new_id`) before the call; the worker sends, learns the wire id from the Go answer — also
when the answer is an error, because whatsmeow fills ``SendResponse.ID`` before writing and
neonize's Go side returns the response beside the error — and records *chosen → wire* in
:class:`Aliases`, a small append-only file in the session directory. Every later event that names
a sent message by its wire id (receipts, from-me echoes, votes on a poll, reactions, edits,
replies quoting it) is reported under the chosen id, so the hub only ever sees the id it stored
before the call. The alias survives worker restarts; it is lost only if the worker dies inside
the Go call itself (no answer, so no wire id to record).
"""

from __future__ import annotations

import dataclasses
import json
import logging
import os
import secrets
import threading
from collections import OrderedDict
from pathlib import Path
from typing import Any

from wahub.engines import base

ALIASES_FILE = "message-ids.jsonl"
MAX_ALIASES = 20_000  # kept (newest) when the file is loaded; receipts older than that are not expected

log = logging.getLogger("wahub.whatsmeow.msgids")


def new_id() -> str:
    """A fresh id in whatsmeow's own shape: ``3EB0`` + 18 upper-case hex digits (72 random bits)."""
    return "3EB0" + secrets.token_hex(9).upper()


class Aliases:
    """chosen id ⇄ wire id, persisted as JSON lines ``{"c": chosen, "w": wire}`` in the session directory."""

    def __init__(self, session_dir: Path) -> None:
        self.path = session_dir / ALIASES_FILE
        self._to_chosen: OrderedDict[str, str] = OrderedDict()
        self._lock = threading.Lock()
        self._load()

    def _load(self) -> None:
        if not self.path.exists():
            return
        for line in self.path.read_text(encoding="utf-8").splitlines():
            try:
                entry = json.loads(line)
                self._to_chosen[str(entry["w"])] = str(entry["c"])
            except (ValueError, KeyError, TypeError):
                log.warning("message_id_alias_line_skipped")
        while len(self._to_chosen) > MAX_ALIASES:
            self._to_chosen.popitem(last=False)

    def add(self, chosen: str, wire: str) -> None:
        """Remember that ``wire`` was sent for ``chosen`` (durably: flushed and fsynced)."""
        if not chosen or not wire or chosen == wire:
            return
        with self._lock:
            self._to_chosen[wire] = chosen
            with open(self.path, "a", encoding="utf-8") as fh:
                fh.write(json.dumps({"c": chosen, "w": wire}) + "\n")
                fh.flush()
                os.fsync(fh.fileno())

    def wire(self, chosen_id: str) -> str:
        """The id WhatsApp knows for a hub-chosen id (itself when it was not aliased)."""
        for wire_id, chosen in reversed(self._to_chosen.items()):
            if chosen == chosen_id:
                return wire_id
        return chosen_id

    def chosen(self, wire_id: str) -> str:
        """The id the hub knows for ``wire_id`` (itself when it was not aliased)."""
        return self._to_chosen.get(wire_id, wire_id)

    def translate(self, event: base.EngineEvent) -> base.EngineEvent:
        """``event`` with every sent-message id replaced by its chosen id."""
        if not self._to_chosen:
            return event
        changes: dict[str, Any] = {}
        if isinstance(event, base.Receipt):
            changes["message_ids"] = tuple(self.chosen(m) for m in event.message_ids)
        elif isinstance(event, base.PollVote):
            changes["poll_message_id"] = self.chosen(event.poll_message_id)
        elif isinstance(event, base.InboundMessage):
            changes["message_id"] = self.chosen(event.message_id)
            if event.quoted_message_id:
                changes["quoted_message_id"] = self.chosen(event.quoted_message_id)
        elif isinstance(event, base.Reaction):
            changes["target_message_id"] = self.chosen(event.target_message_id)
        elif isinstance(event, base.MessageEdit | base.MessageRevoke):
            changes["original_message_id"] = self.chosen(event.original_message_id)
        return dataclasses.replace(event, **changes) if changes else event
