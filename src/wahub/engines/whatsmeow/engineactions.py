"""The whatsmeow engine's send actions besides text and polls, seen from the hub (one worker command each).

Media files cross to the worker through the session's transfer directory (a protocol line holds at
most 1 MiB); see :mod:`~wahub.engines.whatsmeow.workeractions` for the worker's side.
"""

from __future__ import annotations

import base64
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from wahub.engines import base
from wahub.engines.whatsmeow import workeractions


class SendActionsMixin:
    """``send_media`` … ``download_media`` for :class:`~wahub.engines.whatsmeow.engine.WhatsmeowEngine`."""

    if TYPE_CHECKING:
        session_dir: Path

        async def _send(self, cmd: str, args: dict[str, Any]) -> base.SendResult: ...

        async def _query(self, cmd: str, args: dict[str, Any],
                         timeout: float | None = None) -> dict[str, Any]: ...  # noqa: ASYNC109

    def _outgoing_file(self, data: bytes) -> str:
        """Write a media file for the worker to take (and delete); see ``workeractions``."""
        path = workeractions.transfer_path(self.session_dir)
        path.write_bytes(data)
        return str(path)

    async def send_media(self, chat_id: str, media: base.Media, *, message_id: str | None = None) -> base.SendResult:
        args = {"chat_id": chat_id, "media_type": media.media_type, "mimetype": media.mimetype,
                "caption": media.caption, "filename": media.filename, "message_id": message_id,
                "path": self._outgoing_file(media.data)}
        return await self._send("send_media", args)

    async def send_location(self, chat_id: str, location: base.Location, *, message_id: str | None = None
                            ) -> base.SendResult:
        return await self._send("send_location", {"chat_id": chat_id, "latitude": location.latitude,
                                                  "longitude": location.longitude, "name": location.name,
                                                  "address": location.address, "url": location.url,
                                                  "message_id": message_id})

    async def send_vcard(self, chat_id: str, vcard: str, display_name: str, *, message_id: str | None = None
                         ) -> base.SendResult:
        return await self._send("send_vcard", {"chat_id": chat_id, "vcard": vcard, "display_name": display_name,
                                               "message_id": message_id})

    def _target(self, chat_id: str, target: base.MessageRef, message_id: str | None) -> dict[str, Any]:
        return {"chat_id": chat_id, "target_id": target.message_id, "from_me": target.from_me,
                "participant": target.participant, "message_id": message_id}

    async def send_reaction(self, chat_id: str, target: base.MessageRef, emoji: str, *,
                            message_id: str | None = None) -> base.SendResult:
        return await self._send("send_reaction", {**self._target(chat_id, target, message_id), "emoji": emoji})

    async def send_edit(self, chat_id: str, target: base.MessageRef, text: str, *,
                        message_id: str | None = None) -> base.SendResult:
        return await self._send("send_edit", {**self._target(chat_id, target, message_id), "text": text})

    async def send_revoke(self, chat_id: str, target: base.MessageRef, *,
                          message_id: str | None = None) -> base.SendResult:
        return await self._send("send_revoke", self._target(chat_id, target, message_id))

    async def send_forward(self, chat_id: str, kind: str, content: Mapping[str, Any], *,
                           message_id: str | None = None) -> base.SendResult:
        args: dict[str, Any] = {"chat_id": chat_id, "kind": kind, "message_id": message_id,
                                "content": {k: v for k, v in content.items() if k != "data"}}
        if kind == "media":
            args["path"] = self._outgoing_file(base64.b64decode(content["data"]))
        return await self._send("send_forward", args)

    async def send_seen(self, chat_id: str, message_ids: Sequence[str] = ()) -> None:
        await self._query("seen", {"chat_id": chat_id, "message_ids": list(message_ids)})

    async def send_presence(self, chat_id: str | None, state: str) -> None:
        await self._query("presence", {"chat_id": chat_id, "state": state})

    async def download_media(self, chat_id: str, message_id: str, max_bytes: int) -> base.DownloadedMedia:
        result = await self._query("download_media", {"chat_id": chat_id, "message_id": message_id,
                                                      "max_bytes": max_bytes}, timeout=120.0)
        if "missing" in result:
            raise base.MediaNotFound(str(result["missing"]))
        if "too_large" in result:
            raise base.MediaTooLarge(str(result["too_large"]))
        path = workeractions.transfer_path(self.session_dir).parent / Path(str(result["path"])).name
        try:
            data = path.read_bytes()
        finally:
            path.unlink(missing_ok=True)
        return base.DownloadedMedia(data, str(result.get("mimetype") or "application/octet-stream"),
                                    result.get("filename"))
