"""The engine interface: what the runtime asks of a WhatsApp connection and what it hears back.

An :class:`Engine` drives one instance's connection. It reports what happens through the
``EventSink`` it was built with, as the event dataclasses below. Chat ids in and out are
wa-hub's canonical external form (``<digits>@c.us``, ``@g.us``, ``@lid``…). Times are epoch ms.

Send calls raise the :mod:`wahub.domain.errors` ``SendError`` family: ``TransientSendError``
(retry), ``PermanentSendError`` (never retry), ``DisconnectedError`` (re-queue, no attempt); any of
them with ``maybe_sent=True`` when the message may already have reached WhatsApp (→ ``uncertain``).
"""

from __future__ import annotations

import abc
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from wahub.domain.errors import EngineError
from wahub.engines.directory import NO_DIRECTORY, Directory
from wahub.engines.sendtypes import MEDIA_TYPES as MEDIA_TYPES  # the send actions' types (re-exported)
from wahub.engines.sendtypes import DownloadedMedia as DownloadedMedia
from wahub.engines.sendtypes import EngineUnsupported as EngineUnsupported
from wahub.engines.sendtypes import Location as Location
from wahub.engines.sendtypes import Media as Media
from wahub.engines.sendtypes import MediaNotFound as MediaNotFound
from wahub.engines.sendtypes import MediaTooLarge as MediaTooLarge
from wahub.engines.sendtypes import MessageRef as MessageRef


@dataclass(frozen=True)
class Capabilities:
    """What an engine can do."""

    polls: bool = True
    typing: bool = False
    pairing_code: bool = False
    number_check: bool = True
    chosen_message_ids: bool = False  # send_* honours a caller-chosen ``message_id`` (see new_message_id)
    media: bool = False  # send_media
    locations: bool = False  # send_location
    contacts: bool = False  # send_vcard
    reactions: bool = False  # send_reaction
    edits: bool = False  # send_edit
    revokes: bool = False  # send_revoke
    forwards: bool = False  # send_forward
    seen: bool = False  # send_seen
    presence: bool = False  # send_presence
    media_download: bool = False  # download_media


@dataclass(frozen=True)
class QrCode:
    """A new QR string to scan (raw text; the runtime renders the PNG)."""

    code: str


@dataclass(frozen=True)
class PairCode:
    """A pairing code was issued for phone-number login."""

    code: str


@dataclass(frozen=True)
class Authenticated:
    """The phone scanned the QR / the session was accepted; ``ready`` should follow."""


@dataclass(frozen=True)
class Ready:
    """Connected and able to send; ``phone`` is the account's digits when known."""

    phone: str | None = None
    push_name: str | None = None
    jid: str | None = None


@dataclass(frozen=True)
class Disconnected:
    """The connection dropped (recoverable by reconnecting)."""

    reason: str = "disconnected"


@dataclass(frozen=True)
class ConnectFailed:
    """A connection attempt failed before any login step (WhatsApp unreachable).

    ``reason`` is one of ``dns`` | ``tls`` | ``refused`` | ``timeout`` | ``network``; ``detail`` is the
    library's message (no secrets). The supervisor counts it as a failed attempt at once.
    """

    reason: str
    detail: str = ""


@dataclass(frozen=True)
class LoggedOut:
    """The session ended on the phone or the server; a new QR is required."""

    reason: str = "logged_out"


@dataclass(frozen=True)
class TemporaryBan:
    """WhatsApp restricted the account until ``expires_at`` (epoch ms, None when unknown)."""

    code: str
    expires_at: int | None


@dataclass(frozen=True)
class QrTimeout:
    """The QR window ended without a scan."""


INBOUND_KINDS = ("chat", "image", "video", "audio", "ptt", "document", "sticker", "vcard", "multi_vcard", "location")
"""``InboundMessage.kind`` values (whatsapp-web.js ``type`` names)."""


@dataclass(frozen=True)
class InboundMessage:
    """A message received by the account. ``sender_alt`` is the phone JID behind an ``@lid``.

    ``kind`` is one of :data:`INBOUND_KINDS`. ``text`` is the body: the text of a ``chat``, the
    caption of media (also in ``caption``), the vCard of a ``vcard``, "" otherwise. Media kinds set
    ``has_media`` (the bytes stay with WhatsApp until downloaded). ``quoted_*`` describe the message
    this one replies to (``quoted_body`` only when the quoted message carried text).
    """

    message_id: str
    chat_id: str
    sender: str
    text: str
    timestamp: int
    from_me: bool = False
    sender_alt: str | None = None
    push_name: str | None = None
    kind: str = "chat"
    has_media: bool = False
    mimetype: str | None = None
    caption: str | None = None
    filename: str | None = None
    latitude: float | None = None
    longitude: float | None = None
    location_name: str | None = None
    location_address: str | None = None
    vcards: tuple[str, ...] = ()
    quoted_message_id: str | None = None
    quoted_body: str | None = None
    quoted_participant: str | None = None


@dataclass(frozen=True)
class Reaction:
    """An emoji reaction on ``target_message_id`` (``emoji`` "" = the reaction was removed)."""

    message_id: str
    target_message_id: str
    chat_id: str
    sender: str
    emoji: str
    timestamp: int
    from_me: bool = False
    sender_alt: str | None = None


@dataclass(frozen=True)
class MessageEdit:
    """``original_message_id`` was edited by its sender; ``text`` is its new body."""

    original_message_id: str
    chat_id: str
    sender: str
    text: str
    timestamp: int
    from_me: bool = False
    sender_alt: str | None = None


@dataclass(frozen=True)
class MessageRevoke:
    """``original_message_id`` was deleted for everyone by its sender."""

    original_message_id: str
    chat_id: str
    sender: str
    timestamp: int
    from_me: bool = False
    sender_alt: str | None = None


@dataclass(frozen=True)
class PollVote:
    """A vote on a poll: either option names, or SHA-256 hashes of them (hex) to be resolved.

    With ``decrypt_failed`` both selections are None: someone voted on the poll but the engine
    could not read the choice (the app can ask again); it must not replace a known earlier vote.
    """

    poll_message_id: str
    chat_id: str
    voter: str
    timestamp: int
    selected_options: tuple[str, ...] | None = None
    selected_hashes: tuple[str, ...] | None = None
    voter_alt: str | None = None
    decrypt_failed: bool = False  # the vote could not be decrypted: the voter's choice is unknown (no selection)


@dataclass(frozen=True)
class Receipt:
    """Delivery state change for one or more sent messages: ``delivered`` | ``read`` | ``played``."""

    message_ids: tuple[str, ...]
    ack: str
    chat_id: str | None = None
    timestamp: int = 0


EngineEvent = (QrCode | PairCode | Authenticated | Ready | Disconnected | ConnectFailed | LoggedOut | TemporaryBan
               | QrTimeout | InboundMessage | PollVote | Receipt | Reaction | MessageEdit | MessageRevoke)


class EngineStateConflict(EngineError):
    """The engine cannot do this in its current state (→ HTTP 409); ``reason`` says which state.

    ``reason``: ``not_waiting_for_login`` (pairing code asked while no login is pending: restart the
    instance, or it is connecting with a stored session) | ``already_linked``.
    """

    def __init__(self, message: str, *, reason: str) -> None:
        super().__init__(message)
        self.reason = reason
EventSink = Callable[[EngineEvent], Awaitable[None]]


@dataclass(frozen=True)
class SendResult:
    """What WhatsApp answered to a send: the message id it assigned."""

    message_id: str
    timestamp: int = 0
    extra: dict[str, str] = field(default_factory=dict)


class Engine(abc.ABC):
    """One instance's connection to WhatsApp."""

    capabilities = Capabilities()

    @abc.abstractmethod
    async def start(self) -> None:
        """Begin connecting: emits ``QrCode`` or ``Ready`` (or a failure event) later."""

    @abc.abstractmethod
    async def reconnect(self) -> None:
        """Soft restart: drop and re-open the connection, keeping the session."""

    @abc.abstractmethod
    async def stop(self) -> None:
        """Close the connection and release resources; the session stays for the next start."""

    @abc.abstractmethod
    async def logout(self) -> None:
        """End the session on WhatsApp and delete local session data."""

    def new_message_id(self) -> str | None:
        """A fresh WhatsApp message id this engine will use when passed to ``send_*`` as ``message_id``.

        The outbox stores it with the item *before* the call, so a later receipt, ack or from-me
        echo for that id proves an ``uncertain`` send was delivered. None when the engine cannot
        choose ids (then ``message_id`` must not be passed).
        """
        return None

    @abc.abstractmethod
    async def send_text(self, chat_id: str, text: str, *, message_id: str | None = None) -> SendResult:
        """Send ``text`` verbatim to ``chat_id``, under ``message_id`` when given. Raises the ``SendError`` family."""

    @abc.abstractmethod
    async def send_poll(self, chat_id: str, caption: str, options: list[str], multiple: bool, *,
                        message_id: str | None = None, template: Mapping[str, Any] | None = None) -> SendResult:
        """Send a poll (under ``message_id`` when given); votes arrive later as :class:`PollVote`.

        ``template`` is the send's approved message template ``{"name", "language", "bodyParameters"}``
        for engines that have templates (the Cloud API); the others ignore it.

        Raises the ``SendError`` family.
        """

    async def send_typing(self, chat_id: str) -> None:  # noqa: B027 - optional capability
        """Show "typing…" in ``chat_id`` (no-op for engines without the capability)."""

    async def request_pairing_code(self, phone: str) -> str:
        """Ask for a pairing code for phone-number login.

        Raises ``EngineError`` when unsupported, :class:`EngineStateConflict` when no login is pending.
        """
        raise EngineError("this engine does not support pairing codes")

    async def discard_session(self) -> None:  # noqa: B027 - optional capability
        """Delete the local session (stale login) without talking to WhatsApp; the next start shows a QR.

        Stops the engine first when it runs.
        """

    def directory(self) -> Directory:
        """Reads, chat settings and group management (:mod:`wahub.engines.directory`); none by default."""
        return NO_DIRECTORY

    async def probe_ready(self) -> bool:
        """Whether the connection works although ``Ready`` never came (readiness probe)."""
        return False

    @abc.abstractmethod
    async def is_registered(self, chat_id: str) -> bool:
        """True when ``chat_id`` (a person) has WhatsApp. Raises ``EngineError`` when not connected."""


    # -- the other send actions (optional: the default refuses with EngineUnsupported) ---------------
    async def send_media(self, chat_id: str, media: Media, *, message_id: str | None = None) -> SendResult:
        """Send a file (image, video, audio, voice note, document, sticker). Raises the ``SendError`` family."""
        raise EngineUnsupported(f"{type(self).__name__} cannot send media")

    async def send_location(self, chat_id: str, location: Location, *, message_id: str | None = None
                            ) -> SendResult:
        """Send a location pin. Raises the ``SendError`` family."""
        raise EngineUnsupported(f"{type(self).__name__} cannot send locations")

    async def send_vcard(self, chat_id: str, vcard: str, display_name: str, *, message_id: str | None = None
                         ) -> SendResult:
        """Send a contact card (vCard text). Raises the ``SendError`` family."""
        raise EngineUnsupported(f"{type(self).__name__} cannot send contact cards")

    async def send_reaction(self, chat_id: str, target: MessageRef, emoji: str, *,
                            message_id: str | None = None) -> SendResult:
        """React to ``target`` with ``emoji`` ("" removes the reaction). Raises the ``SendError`` family."""
        raise EngineUnsupported(f"{type(self).__name__} cannot send reactions")

    async def send_edit(self, chat_id: str, target: MessageRef, text: str, *,
                        message_id: str | None = None) -> SendResult:
        """Replace the text of ``target`` (a message this account sent). Raises the ``SendError`` family."""
        raise EngineUnsupported(f"{type(self).__name__} cannot edit messages")

    async def send_revoke(self, chat_id: str, target: MessageRef, *, message_id: str | None = None) -> SendResult:
        """Delete ``target`` for everyone. Raises the ``SendError`` family."""
        raise EngineUnsupported(f"{type(self).__name__} cannot delete messages for everyone")

    async def send_forward(self, chat_id: str, kind: str, content: Mapping[str, Any], *,
                           message_id: str | None = None) -> SendResult:
        """Send a copy of a message (its item ``kind`` and stored ``content``) marked "Forwarded"."""
        raise EngineUnsupported(f"{type(self).__name__} cannot forward messages")

    async def send_seen(self, chat_id: str, message_ids: Sequence[str] = ()) -> None:
        """Mark the chat read (blue ticks) up to now. Raises ``EngineError``."""
        raise EngineUnsupported(f"{type(self).__name__} cannot mark chats read")

    async def send_presence(self, chat_id: str | None, state: str) -> None:
        """``state``: ``typing`` | ``recording`` | ``paused`` in ``chat_id``, or ``available`` | ``unavailable``
        for the account (``chat_id`` None). Raises ``EngineError``."""
        raise EngineUnsupported(f"{type(self).__name__} cannot send presence")

    async def download_media(self, chat_id: str, message_id: str, max_bytes: int) -> DownloadedMedia:
        """The bytes of a received message's media, at most ``max_bytes`` (``MediaTooLarge`` beyond).

        Raises ``MediaNotFound`` when the engine knows no media for that message, ``EngineError`` otherwise.
        """
        raise EngineUnsupported(f"{type(self).__name__} cannot download media")


class EngineFactory(abc.ABC):
    """Builds engines; one per instance, built again on a hard restart."""

    name: str = "engine"

    @abc.abstractmethod
    def create(self, instance_id: str, sink: EventSink) -> Engine:
        """A fresh, unstarted engine for ``instance_id`` reporting to ``sink``."""

    async def remove_session(self, instance_id: str) -> None:  # noqa: B027 - optional hook
        """Delete ``instance_id``'s local session when no engine of it runs (instance deleted in any state)."""

    async def close(self) -> None:  # noqa: B027 - optional hook
        """Release anything shared by the engines of this factory."""
