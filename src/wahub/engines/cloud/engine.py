"""The ``cloud`` engine: one instance's Cloud API phone number, driven over the Graph API.

There is no connection to hold and no QR: ``start`` reads the instance's credentials through the
:data:`~wahub.engines.cloud.account.CredentialsProvider` and makes one cheap Graph call
(``GET /{phone-number-id}``). It then reports

* ``Ready(phone=<digits>, push_name=<verified name>)`` when the call succeeds;
* ``LoggedOut("<reason> (Graph <code>): <message>")`` when the credentials are missing, expired
  (190) or lack permission (0, 3, 10, 100, 200-299) — terminal until an operator fixes them;
* ``TemporaryBan(code)`` when Meta restricted the account (368, 131031);
* ``ConnectFailed(reason, detail)`` when Graph cannot be reached (dns, tls, refused, timeout, network)
  and ``Disconnected("graph_unavailable …")`` for a Graph server error: the supervisor retries.

Sends map Graph's answers with :mod:`.errors`. An auth or restriction error during a send also
reports the terminal state (``LoggedOut`` / ``TemporaryBan``) and re-queues the item
(``DisconnectedError``). Inbound messages, votes and statuses do not pass through the engine:
Meta posts them to the webhook route (:mod:`wahub.api.cloud` + :mod:`.receiver`).

Message ids are assigned by Meta (``wamid.…``): :meth:`CloudEngine.new_message_id` is None.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import httpx
import structlog

from wahub.domain import chatid
from wahub.domain.clock import Clock
from wahub.domain.errors import DisconnectedError, EngineError, PermanentSendError
from wahub.engines import base
from wahub.engines.cloud import errors, graph, polls
from wahub.engines.cloud.account import CloudAccount, CredentialsProvider, LastInbound

log = structlog.get_logger("wahub.engines.cloud")


@dataclass(frozen=True)
class CloudOptions:
    """How the engine reaches Graph (timeouts in seconds). ``transport`` replaces httpx's in tests."""

    base_url: str = graph.DEFAULT_BASE_URL
    api_version: str = graph.API_VERSION
    timeout_s: float = 15.0
    connect_timeout_s: float = 5.0
    transport: httpx.AsyncBaseTransport | None = None


class CloudEngine(base.Engine):
    """One instance's Cloud API phone number."""

    capabilities = base.Capabilities(polls=True, typing=False, pairing_code=False, number_check=False,
                                     chosen_message_ids=False)

    def __init__(self, instance_id: str, sink: base.EventSink, *, credentials: CredentialsProvider, clock: Clock,
                 options: CloudOptions | None = None, last_inbound: LastInbound | None = None) -> None:
        self.instance_id = instance_id
        self.sink = sink
        self.clock = clock
        self.options = options or CloudOptions()
        self._credentials = credentials
        self._last_inbound = last_inbound
        self._account: CloudAccount | None = None
        self._client: graph.GraphClient | None = None
        self._reports: set[asyncio.Task[None]] = set()

    # -- lifecycle --------------------------------------------------------------------------------
    async def start(self) -> None:
        """Check the credentials with one Graph call; report Ready or why not."""
        await self._close_client()
        account = await self._credentials(self.instance_id)
        if account is None:
            await self.sink(base.LoggedOut("no_credentials: the instance has no Cloud API credentials"))
            return
        self._account, self._client = account, self._new_client(account)
        try:
            info = await self._client.phone_number(account.phone_number_id)
        except errors.GraphUnreachable as exc:
            log.warning("graph_unreachable", instance_id=self.instance_id, reason=exc.reason)
            await self.sink(base.ConnectFailed(exc.reason, str(exc)))
            return
        except errors.GraphError as exc:
            log.warning("credentials_check_failed", instance_id=self.instance_id, code=exc.code, subcode=exc.subcode)
            await self.sink(self._state_event(exc, on_check=True))
            return
        digits = "".join(c for c in (info.display_phone_number or "") if c.isdigit()) or None
        log.info("cloud_ready", instance_id=self.instance_id, phone_number_id=account.phone_number_id)
        await self.sink(base.Ready(phone=digits, push_name=info.verified_name,
                                   jid=f"{digits}@c.us" if digits else None))

    async def reconnect(self) -> None:
        """Read the credentials again and re-check them (an operator may have replaced the token)."""
        await self.start()

    async def stop(self) -> None:
        """Close the HTTP pool; nothing else is held."""
        await self._close_client()
        for task in list(self._reports):
            await asyncio.gather(task, return_exceptions=True)

    async def logout(self) -> None:
        """Stop. There is no session to end on Meta's side; the stored credentials are the runtime's to delete."""
        await self.stop()

    async def probe_ready(self) -> bool:
        """Whether the credentials check passes right now."""
        if self._client is None or self._account is None:
            return False
        try:
            await self._client.phone_number(self._account.phone_number_id)
        except EngineError:
            return False
        return True

    # -- sends ------------------------------------------------------------------------------------
    async def send_text(self, chat_id: str, text: str, *, message_id: str | None = None) -> base.SendResult:
        """Send ``text`` (only inside the service window). Raises the ``SendError`` family."""
        await self._require_window(chat_id, template=None)
        return await self._send(chat_id, graph.text_message(text))

    async def send_poll(self, chat_id: str, caption: str, options: list[str], multiple: bool, *,
                        message_id: str | None = None,
                        template: polls.PollTemplate | Mapping[str, Any] | None = None) -> base.SendResult:
        """Send a poll as buttons, a list or a template (``template`` overrides the instance's default;
        a mapping is the stored ``{"name", "language", "bodyParameters"}`` shape).

        Raises ``OutsideServiceWindow`` (closed window, no template) and the ``SendError`` family.
        """
        account = self._require_account()
        if template is not None and not isinstance(template, polls.PollTemplate):
            try:
                template = polls.PollTemplate.from_json(dict(template))
            except ValueError as exc:
                raise PermanentSendError(f"template: {exc}", reason="invalid_poll") from exc
        chosen = template or account.poll_template
        window = await self._require_window(chat_id, template=chosen)
        content = polls.poll_message(caption, options, template=chosen, window=window, list_button=account.list_button)
        return await self._send(chat_id, content)

    async def is_registered(self, chat_id: str) -> bool:
        """Not offered by the Cloud API (its contacts check was retired). Raises ``EngineError``."""
        raise EngineError("the Cloud API cannot check whether a number has WhatsApp")

    # -- internals --------------------------------------------------------------------------------
    async def _require_window(self, chat_id: str, *, template: polls.PollTemplate | None) -> bool | None:
        """The service-window state (None when unknown); raises ``OutsideServiceWindow`` without a template."""
        if self._last_inbound is None:
            return None
        last = await self._last_inbound(self.instance_id, chat_id)
        is_open = polls.window_open(last, self.clock.now_ms())
        if not is_open and template is None:
            raise errors.OutsideServiceWindow()
        return is_open

    async def _send(self, chat_id: str, content: dict[str, object]) -> base.SendResult:
        account = self._require_account()
        client = self._client
        if client is None:
            raise DisconnectedError("the cloud engine is not started", reason="not_connected")
        digits = chatid.phone_number(chat_id)
        if digits is None:
            raise PermanentSendError(f"the Cloud API reaches people by phone number, not {chat_id}",
                                     reason="invalid_recipient")
        try:
            wamid = await client.send(account.phone_number_id, digits, dict(content))
        except errors.GraphUnreachable as exc:
            raise errors.unreachable_send_error(exc) from exc
        except errors.GraphError as exc:
            verdict = errors.classify(exc.code, http_status=exc.http_status)
            if verdict.kind in (errors.Kind.AUTH, errors.Kind.RESTRICTED):
                self._report(self._state_event(exc, on_check=False))
            raise errors.send_error(exc) from exc
        return base.SendResult(message_id=wamid, timestamp=self.clock.now_ms())

    def _state_event(self, exc: errors.GraphError, *, on_check: bool) -> base.EngineEvent:
        verdict = errors.classify(exc.code, http_status=exc.http_status, on_check=on_check)
        if verdict.kind is errors.Kind.AUTH:
            return base.LoggedOut(errors.terminal_reason(exc))
        if verdict.kind is errors.Kind.RESTRICTED:
            return base.TemporaryBan(code=f"graph_{exc.code}", expires_at=None)
        return base.Disconnected(f"{verdict.reason} (Graph {exc.code}): {exc.graph_message}")

    def _report(self, event: base.EngineEvent) -> None:
        """Report a state change found during a send without waiting on the sink inside the send."""
        task = asyncio.ensure_future(self.sink(event))
        self._reports.add(task)
        task.add_done_callback(self._reports.discard)

    def _require_account(self) -> CloudAccount:
        if self._account is None:
            raise DisconnectedError("the cloud engine is not started", reason="not_connected")
        return self._account

    def _new_client(self, account: CloudAccount) -> graph.GraphClient:
        opts = self.options
        return graph.GraphClient(account.access_token, base_url=opts.base_url, api_version=opts.api_version,
                                 timeout_s=opts.timeout_s, connect_timeout_s=opts.connect_timeout_s,
                                 transport=opts.transport)

    async def _close_client(self) -> None:
        client, self._client = self._client, None
        if client is not None:
            await client.aclose()


class CloudEngineFactory(base.EngineFactory):
    """Builds :class:`CloudEngine` s that read credentials through ``credentials``."""

    name = "cloud"

    def __init__(self, credentials: CredentialsProvider, *, clock: Clock, options: CloudOptions | None = None,
                 last_inbound: LastInbound | None = None) -> None:
        self.credentials = credentials
        self.clock = clock
        self.options = options or CloudOptions()
        self.last_inbound = last_inbound

    def create(self, instance_id: str, sink: base.EventSink) -> CloudEngine:
        return CloudEngine(instance_id, sink, credentials=self.credentials, clock=self.clock,
                           options=self.options, last_inbound=self.last_inbound)
