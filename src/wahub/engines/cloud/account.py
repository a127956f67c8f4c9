"""A Cloud API account's credentials and settings, and the seam the engine reads them through.

Secrets (access token, app secret, verify token) never appear in ``repr`` or logs; at rest they
are sealed by :mod:`wahub.engines.cloud.crypto`.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from wahub.engines.cloud.polls import PollTemplate

_REQUIRED = ("phoneNumberId", "wabaId", "accessToken", "appSecret", "verifyToken")


@dataclass(frozen=True)
class CloudAccount:
    """One instance's Cloud API phone number.

    ``phone_number_id`` / ``waba_id`` are Meta's numeric ids; ``poll_template`` is the instance's
    default template for polls (None: polls go out as buttons / lists inside the service window).
    """

    phone_number_id: str
    waba_id: str
    access_token: str = field(repr=False)
    app_secret: str = field(repr=False)
    verify_token: str = field(repr=False)
    poll_template: PollTemplate | None = None
    list_button: str = "Choose"

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> CloudAccount:
        """From the API shape (camelCase keys). Raises ValueError naming the bad field."""
        for key in _REQUIRED:
            value = data.get(key)
            if not isinstance(value, str) or not value.strip():
                raise ValueError(f"cloud.{key} is required (a non-empty string)")
        for key in ("phoneNumberId", "wabaId"):
            if not str(data[key]).strip().isdigit():
                raise ValueError(f"cloud.{key} must be Meta's numeric id")
        template = data.get("pollTemplate")
        if template is not None and not isinstance(template, dict):
            raise ValueError("cloud.pollTemplate must be an object {name, language, bodyParameters?}")
        list_button = data.get("listButton", "Choose")
        if not isinstance(list_button, str) or not 0 < len(list_button.strip()) <= 20:
            raise ValueError("cloud.listButton must be 1-20 characters")
        try:
            poll_template = PollTemplate.from_json(template) if template is not None else None
        except ValueError as exc:
            raise ValueError(f"cloud.pollTemplate: {exc}") from exc
        return cls(phone_number_id=data["phoneNumberId"].strip(), waba_id=data["wabaId"].strip(),
                   access_token=data["accessToken"].strip(), app_secret=data["appSecret"].strip(),
                   verify_token=data["verifyToken"], poll_template=poll_template, list_button=list_button.strip())

    def to_json(self) -> dict[str, Any]:
        """The full shape including secrets — only for sealing at rest (see ``crypto``), never for answers."""
        return {"phoneNumberId": self.phone_number_id, "wabaId": self.waba_id, "accessToken": self.access_token,
                "appSecret": self.app_secret, "verifyToken": self.verify_token,
                "pollTemplate": self.poll_template.to_json() if self.poll_template else None,
                "listButton": self.list_button}

    def public_json(self) -> dict[str, Any]:
        """What the API may show after creation: ids and template, no secrets."""
        return {"phoneNumberId": self.phone_number_id, "wabaId": self.waba_id,
                "pollTemplate": self.poll_template.to_json() if self.poll_template else None,
                "listButton": self.list_button}


CredentialsProvider = Callable[[str], Awaitable["CloudAccount | None"]]
"""``instance_id`` → its :class:`CloudAccount`, or None when the instance has none (not a cloud instance)."""

LastInbound = Callable[[str, str], Awaitable["int | None"]]
"""``(instance_id, chat_id)`` → epoch ms of the last message that chat sent us, None if never (service window)."""
