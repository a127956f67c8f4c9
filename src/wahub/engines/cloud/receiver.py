"""The engine side of the Cloud API webhook route: check a call, parse it, hand the events over.

:class:`CloudWebhookReceiver` implements the port :class:`wahub.api.cloud.CloudWebhookPort` (by
shape; the API layer does not import engines). It looks up the instance's credentials, answers
the verification handshake, checks ``X-Hub-Signature-256`` against the app secret, and passes
each parsed event to ``deliver(instance_id, event)`` — the runtime's per-instance event sink.
Refusals are :mod:`wahub.domain.errors` ``ApiError`` s: ``NotFound`` (not a cloud instance) and
:class:`~wahub.engines.cloud.errors.WebhookRejected` (403: forged signature, wrong token).

Delivery is at least once: when ``deliver`` raises (the store is down), the route answers an
error, Meta retries the whole call later, and the events delivered before the failure arrive
again — the runtime's inbound dedupe (by message id) and forward-only acks absorb them.
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable

import structlog

from wahub.domain.errors import NotFound
from wahub.engines.cloud import webhook
from wahub.engines.cloud.account import CloudAccount, CredentialsProvider
from wahub.engines.cloud.errors import WebhookRejected

log = structlog.get_logger("wahub.engines.cloud.webhook")

Deliver = Callable[[str, webhook.CloudEvent], Awaitable[None]]


class CloudWebhookReceiver:
    """Verifies and parses Meta's webhook calls for every cloud instance."""

    def __init__(self, credentials: CredentialsProvider, deliver: Deliver) -> None:
        self._credentials = credentials
        self._deliver = deliver

    async def challenge(self, instance_id: str, mode: str | None, token: str | None,
                        hub_challenge: str | None) -> str:
        """The ``hub.challenge`` to echo. Raises NotFound / WebhookRejected."""
        account = await self._account(instance_id)
        answer = webhook.challenge(account.verify_token, mode, token, hub_challenge)
        if answer is None:
            log.warning("cloud_webhook_verify_refused", instance_id=instance_id, mode=mode)
            raise WebhookRejected("verification refused: hub.mode must be 'subscribe' and hub.verify_token "
                                  "must match the instance's verify token")
        return answer

    async def receive(self, instance_id: str, body: bytes, signature: str | None) -> int:
        """Check and parse one POST; returns how many events were delivered. Raises NotFound / WebhookRejected."""
        account = await self._account(instance_id)
        if not webhook.signature_valid(account.app_secret, body, signature):
            log.warning("cloud_webhook_bad_signature", instance_id=instance_id, has_signature=bool(signature))
            raise WebhookRejected(f"{webhook.SIGNATURE_HEADER} does not match the body signed with the app secret")
        try:
            payload = json.loads(body)
        except ValueError:
            log.warning("cloud_webhook_not_json", instance_id=instance_id, size=len(body))
            return 0  # signed by Meta but unreadable: acknowledge, a retry would not read better
        events = webhook.parse(payload, phone_number_id=account.phone_number_id)
        for event in events:
            await self._deliver(instance_id, event)
        log.info("cloud_webhook", instance_id=instance_id, events=len(events))
        return len(events)

    async def _account(self, instance_id: str) -> CloudAccount:
        account = await self._credentials(instance_id)
        if account is None:
            raise NotFound(f"no Cloud API instance {instance_id!r}")
        return account
