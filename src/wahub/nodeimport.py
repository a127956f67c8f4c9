"""``wa-hub import-node DIR``: move the existing (Node) wa-hub's instances and sent keys into this hub's store.

The old hub keeps two JSON files in its working directory (names from ``INSTANCES_DATA_PATH`` and
``IDEMPOTENCY_DATA_PATH``):

* the instance list, an array of ``{id, name, webhookUrl, webhookEvents, typingIndicatorEnabled,
  applyTypingTo, createdAt}``;
* the idempotency store, an array of ``{idempotencyKey, instanceName, queueItemId, status,
  createdAt, updatedAt, sentAt, providerMessageId, error}`` (ISO times, status ``QUEUED`` / ``SENT`` /
  ``FAILED`` / ``SKIPPED``).

Every instance is created in ``initializing`` with its typing settings, so the hub boots it on its
next start and shows a QR: whatsapp-web.js sessions cannot move to this engine, each phone links
again. Every ``SENT`` key is stored in one step as an already-sent outbox item
(``key_source="imported"``, the old message id; :meth:`~wahub.store.base.ImportPort.insert_sent_item`),
so any send with that key answers as a replay and is never sent again. The import is idempotent:
instances and keys that exist are kept.
"""

from __future__ import annotations

import json
import uuid
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

from wahub.config import Settings
from wahub.domain import chatid, sendsettings
from wahub.domain.answer import IMPORTED
from wahub.domain.clock import Clock
from wahub.domain.errors import Conflict, InvalidInput
from wahub.runtime.events import WEBHOOK_EVENTS
from wahub.store.base import Store

__all__ = ["IMPORTED", "ImportReport", "NodeFiles", "import_node", "read_files", "source_paths"]


@dataclass
class ImportReport:
    """What an import did; ``notes`` says what was left out and why."""

    instances_created: list[str] = field(default_factory=list)
    instances_kept: list[str] = field(default_factory=list)
    keys_imported: int = 0
    keys_kept: int = 0
    keys_skipped: dict[str, int] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)

    def lines(self) -> list[str]:
        """The report as printable lines."""
        out = [f"instances created: {len(self.instances_created)} {sorted(self.instances_created)}",
               f"instances already here (kept as they are): {len(self.instances_kept)}",
               f"sent idempotency keys imported: {self.keys_imported} (already here: {self.keys_kept})"]
        out += [f"keys not imported ({why}): {n}" for why, n in sorted(self.keys_skipped.items())]
        out += self.notes
        if self.instances_created:
            out.append("Sessions cannot move from the existing wa-hub (whatsapp-web.js) to this engine: each "
                       "imported instance comes up asking for a QR code. Start the hub and scan each one "
                       "(`wa-hub qr ID`, GET /instances/{id}/client/qr or the dashboard).")
        return out


def _read_array(path: Path, what: str) -> list[dict[str, Any]]:
    """The JSON array in ``path`` (objects only). Raises ValueError naming the file when it is not one."""
    try:
        data = json.loads(path.read_text(encoding="utf-8") or "[]")
    except json.JSONDecodeError as exc:
        raise ValueError(f"{path}: not valid JSON ({exc.msg} at line {exc.lineno})") from None
    if not isinstance(data, list):
        raise ValueError(f"{path}: the {what} must be a JSON array")
    return [x for x in data if isinstance(x, dict)]


def _ms(value: Any, default: int) -> int:
    """An ISO time (Node's ``toISOString``) or epoch ms as epoch ms; ``default`` when absent or unreadable."""
    if isinstance(value, int | float) and not isinstance(value, bool):
        return int(value)
    if isinstance(value, str):
        try:
            return int(datetime.fromisoformat(value.replace("Z", "+00:00")).timestamp() * 1000)
        except ValueError:
            return default
    return default


def source_paths(settings: Settings, directory: Path) -> tuple[Path, Path]:
    """The old instance list and idempotency store; relative setting paths are taken inside ``directory``."""
    return directory / settings.node_instances_path, directory / settings.node_idempotency_path


@dataclass(frozen=True)
class NodeFiles:
    """The old hub's two files, parsed."""

    instances: list[dict[str, Any]]
    records: list[dict[str, Any]]
    notes: list[str]


def read_files(instances_file: Path, idempotency_file: Path) -> NodeFiles:
    """Read both files. Raises ValueError naming a file that is missing (the list) or not a JSON array."""
    if not instances_file.is_file():
        raise ValueError(f"{instances_file}: no instance list of the existing wa-hub here "
                         "(set INSTANCES_DATA_PATH if it has another name)")
    notes = []
    records: list[dict[str, Any]] = []
    if idempotency_file.is_file():
        records = _read_array(idempotency_file, "idempotency store")
    else:
        notes.append(f"{idempotency_file}: not found, no sent keys imported")
    return NodeFiles(_read_array(instances_file, "instance list"), records, notes)


async def import_node(store: Store, clock: Clock, files: NodeFiles, *, engine: str = "whatsmeow") -> ImportReport:
    """Import the parsed files into ``store`` (migrated first) as instances of ``engine`` (``WAHUB_ENGINE``);
    returns what was done."""
    report = ImportReport(notes=list(files.notes))
    await store.migrate()
    now = clock.now_ms()
    names: dict[str, str] = {}  # old id, old name and sanitised name → our id
    for old in files.instances:
        iid = await _import_instance(store, old, now, report, engine)
        if iid is not None:
            for alias in (old.get("id"), old.get("name"), iid):
                if isinstance(alias, str):
                    names[alias] = iid
    for rec in files.records:
        await _import_key(store, rec, names, now, report)
    return report


async def _import_instance(store: Store, old: dict[str, Any], now: int, report: ImportReport,
                           engine: str) -> str | None:
    name = old.get("name") if isinstance(old.get("name"), str) else old.get("id")
    if not isinstance(name, str) or not name.strip():
        report.notes.append(f"skipped an instance without id or name: {json.dumps(old)[:120]}")
        return None
    iid = chatid.instance_id_from_name(old["id"] if isinstance(old.get("id"), str) else name)
    url = old.get("webhookUrl")
    if url is not None and not (isinstance(url, str) and url.startswith(("http://", "https://"))):
        report.notes.append(f"{iid}: webhook URL {url!r} is not http(s); imported without a webhook")
        url = None
    events = [e for e in old.get("webhookEvents") or [] if isinstance(e, str)]
    unknown = [e for e in events if e not in WEBHOOK_EVENTS]
    if unknown:
        report.notes.append(f"{iid}: webhook events {unknown} do not exist here and were dropped")
    typing: dict[str, Any] = {}
    for field_name in ("typingIndicatorEnabled", "applyTypingTo"):
        try:
            typing.update(sendsettings.columns({field_name: old.get(field_name)}))
        except InvalidInput as exc:
            report.notes.append(f"{iid}: {exc}; not imported")
    try:
        await store.create_instance(id=iid, name=name.strip(), webhook_url=url,
                                    webhook_events=[e for e in events if e in WEBHOOK_EVENTS], webhook_secret=None,
                                    now=_ms(old.get("createdAt"), now), state="initializing", engine=engine,
                                    **typing)
    except Conflict:
        report.instances_kept.append(iid)
        return iid
    report.instances_created.append(iid)
    return iid


async def _import_key(store: Store, rec: dict[str, Any], names: dict[str, str], now: int,
                      report: ImportReport) -> None:
    def skip(why: str) -> None:
        report.keys_skipped[why] = report.keys_skipped.get(why, 0) + 1

    key, status, message_id = rec.get("idempotencyKey"), rec.get("status"), rec.get("providerMessageId")
    if status != "SENT":
        skip(f"status {status}: never sent, so a retry may send it")
        return
    if not isinstance(key, str) or not key or not isinstance(message_id, str) or not message_id:
        skip("SENT without a key or message id")
        return
    iid = names.get(str(rec.get("instanceName")))
    if iid is None:
        skip("instance not in the instance list")
        return
    created = _ms(rec.get("createdAt"), now)
    fresh = await store.insert_sent_item(
        queue_id=uuid.uuid4().hex, instance_id=iid, idempotency_key=key, key_source=IMPORTED, kind="text",
        chat_id="", payload={"importedFrom": "existing wa-hub", "oldQueueItemId": rec.get("queueItemId")},
        fingerprint=IMPORTED, message_id=message_id, created_at=created, sent_at=_ms(rec.get("sentAt"), created))
    if fresh:
        report.keys_imported += 1
    else:
        report.keys_kept += 1
