"""Response bodies as documented in OpenAPI (what the routes really answer; checked by schemathesis).

Times are epoch milliseconds unless a field says ISO; every success body carries ``status: "success"``
(the existing wa-hub's envelope) except ``GET /instances`` (a bare array) and ``/health`` / ``/ready``.
Objects may grow fields; the ones listed here are always present.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

Success = Literal["success"]
StateName = Literal["initializing", "connecting", "needs_qr", "ready", "disconnected", "restricted", "error",
                    "logged_out", "stopped"]
ExternalStatus = Literal["initializing", "connecting", "needs_qr", "ready", "disconnected", "restricted", "error",
                         "logged_out", "stopped", "qr"]


class _Answer(BaseModel):
    model_config = ConfigDict(extra="allow")


class ErrorBody(_Answer):
    """Every refusal: ``{"error": message, "status": HTTP code, ...context}`` (the existing wa-hub's shape)."""

    model_config = ConfigDict(extra="allow", json_schema_extra={
        "examples": [{"error": "chatId is required", "status": 400}]})

    error: str = Field(description="what went wrong; names the field for bad input")
    status: int = Field(description="the HTTP status code again", ge=400, le=599)


class Health(_Answer):
    """``GET /health``: the process is alive (plus the existing wa-hub's resource figures)."""

    status: Literal["ok"]
    service: Literal["wa-hub"]
    instanceCount: int
    cpuPercent: float
    loadavg: list[float]
    memoryUsedMB: int | None
    memoryTotalMB: int | None
    memoryPercent: float | None
    processRssMB: int


class Ready(_Answer):
    """``GET /ready``: 200 when the store answers and the hub has started, else 503 with the same shape."""

    status: Literal["ok", "unavailable"]
    store: bool
    engines: bool


class InstanceBrief(_Answer):
    """An instance as lists and create/update answers show it."""

    id: str
    name: str
    status: ExternalStatus = Field(description="WaAPI status: the state, or qr while a QR is shown")
    state: StateName
    phoneNumber: str | None
    webhookUrl: str | None = Field(description="credentials in the URL are masked")
    webhookEvents: list[str] | None
    lastError: str | None


class InstanceAnswer(_Answer):
    """One instance; ``message`` on ``POST /instances`` for an id that exists."""

    instance: InstanceBrief
    status: Success
    message: str | None = None


class Deleted(_Answer):
    """Delete (idempotent) and, by default, logout: ``deleted: false`` for an unknown id."""

    message: str
    deleted: bool
    purged: bool
    purgedPaths: list[str]
    droppedFromOutbound: int = Field(description="open (queued or sending) items deleted with the instance")
    status: Success


class LoggedOutEnvelope(_Answer):
    """Logout with ``WAAPI_ENVELOPE=true``: the instance and its queue stay, in ``logged_out``."""

    message: str
    data: dict[str, Any]
    status: Success


class Enqueued(_Answer):
    """A send was taken (202 queued) or is a replay of a sent one (200, with ``messageId``). The default shape."""

    status: Success
    queueId: str
    idempotencyKey: str
    replay: bool
    instanceState: StateName
    queueDepth: int
    message: str
    queued: bool | None = None
    itemStatus: str | None = None
    messageId: str | None = None
    warning: str | None = None


class EnqueuedEnvelope(_Answer):
    """The same answer under ``data`` when ``WAAPI_ENVELOPE=true`` (the official WaAPI SDK reads it there)."""

    status: Success
    data: Enqueued


class ActionDone(_Answer):
    """``send-seen``, typing and presence: done at once (the fields also under ``data``)."""

    status: Success
    data: dict[str, Any]
    chatId: str | None = None


class MediaDownloaded(_Answer):
    """``download-media``: ``media {mimetype, data (base64), filename, filesize}``; raw with Accept: octet-stream."""

    status: Success
    data: dict[str, Any]
    media: dict[str, Any] | None = None


class QrCode(_Answer):
    """``GET .../client/qr``: ``qr_code`` is a base64 PNG, null when the instance is already linked."""

    qrCode: dict[str, Any]
    instanceStatus: str
    status: Success
    message: str | None = None


class ClientStatus(_Answer):
    """``GET .../client/status`` (WaAPI shape plus the existing wa-hub's debug fields)."""

    clientStatus: dict[str, Any]
    status: Success


class ClientMe(_Answer):
    """``GET .../client/me``: the linked account (instance must be ready)."""

    me: dict[str, Any]
    status: Success


class DataAnswer(_Answer):
    """WaAPI action answers: the result under ``data``."""

    data: dict[str, Any]
    status: Success
    message: str | None = None
    instanceId: str | None = None


class Restarted(_Answer):
    """``POST .../restart``: returns at once; ``warning`` when the instance was restricted by WhatsApp."""

    status: Success
    message: str
    instanceId: str
    currentState: StateName
    warning: str | None = None


class OutboxItem(_Answer):
    """One outbox item; times in epoch ms."""

    queueId: str
    instanceId: str
    idempotencyKey: str
    keySource: Literal["header", "body", "derived"]
    kind: Literal["text", "poll", "media", "location", "vcard", "reaction", "edit", "revoke", "forward"]
    chatId: str
    payload: dict[str, Any]
    status: str
    attempts: int
    nextAttemptAt: int
    createdAt: int
    updatedAt: int
    sentAt: int | None
    messageId: str | None
    lastError: str | None
    errorReason: str | None


class ItemAnswer(_Answer):
    """One item (after an action or a lookup); ``votes`` for a sent poll."""

    item: OutboxItem
    status: Success
    votes: list[dict[str, Any]] | None = None


class OutboxPage(_Answer):
    """``GET .../outbox``: one page of items (oldest first) and the counts by status."""

    instanceId: str
    depth: int
    byStatus: dict[str, int]
    total: int
    limit: int
    offset: int
    items: list[OutboxItem]
    status: Success


class QueueCleared(_Answer):
    """``DELETE .../queue``: how many queued items were canceled."""

    message: str
    cleared: int
    queueDepth: int
    droppedFromOutbound: int
    status: Success


class PollVotesAnswer(_Answer):
    """The poll as sent (null when it was not sent by wa-hub) and every voter's latest vote."""

    pollMessageId: str
    poll: dict[str, Any] | None
    votes: list[dict[str, Any]]
    status: Success


class WebhookEvent(_Answer):
    """One webhook event and its delivery state."""

    eventId: str
    event: str
    status: Literal["pending", "delivered", "dead"]
    attempts: int
    nextAttemptAt: int | None
    createdAt: int
    deliveredAt: int | None
    lastError: str | None
    lastStatusCode: int | None


class EventList(_Answer):
    """Webhook events of one instance."""

    instanceId: str
    events: list[WebhookEvent]
    status: Success


class Replayed(_Answer):
    """How many dead letters went back to pending."""

    replayed: int
    status: Success


class StatusDocument(_Answer):
    """``GET .../status``: the native status document plus the existing wa-hub's fields (times epoch ms,
    ``*At`` strings ISO where the old hub had them; see docs/compatibility.md)."""

    instance: dict[str, Any]
    client: dict[str, Any]
    transitions: list[dict[str, Any]] = Field(description="newest first: {at, from, to, reason}")
    queue: dict[str, Any]
    rateLimits: dict[str, Any]
    counters: dict[str, Any]
    reconnection: dict[str, Any]
    webhook: dict[str, Any]
    lastError: str | None
    status: Success


class Diagnostics(_Answer):
    """``GET .../diagnostics`` (existing wa-hub route): state, queue, transitions and process resources."""

    instanceId: str
    state: StateName
    lastError: str | None
    stateSince: str | None = Field(description="ISO-8601")
    stateReason: str | None
    queueDepth: int
    transitions: list[dict[str, Any]]
    webhook: dict[str, Any]
    process: dict[str, Any]
    status: Success


class SystemStatus(_Answer):
    """``GET /system/status`` (existing wa-hub route): every instance's state and queue."""

    mode: str
    queuedOutboundCount: int
    queuedOutboundByInstance: dict[str, int]
    instances: list[dict[str, Any]]
    perInstanceStates: list[dict[str, Any]]
    status: Success


class PendingQueue(_Answer):
    """``GET .../queue`` (existing wa-hub shape): the pending items; ``age``/``nextAttemptIn`` in ms."""

    depth: int
    sendLoopRunning: bool
    instanceState: StateName
    eligibleCount: int
    items: list[dict[str, Any]]
    status: Success


class Triggered(_Answer):
    """``POST .../queue/trigger``: the send loop was woken."""

    success: bool
    message: str
    instanceId: str
    instanceState: StateName
    queueDepth: int
    status: Success


class RetryStarted(_Answer):
    """``POST .../retry``: a hard restart of a stopped or failed instance began."""

    message: str
    instanceId: str
    status: Success


class InfoRaw(_Answer):
    """``GET .../client/info-raw``: what the engine knows (``info`` null unless ready)."""

    instanceId: str
    state: StateName
    engine: str
    info: dict[str, Any] | None
    status: Success


class ActionData(_Answer):
    """The inner envelope of a read, chat or group action; the result sits under the action's own key."""

    status: Success
    instanceId: str


class ActionAnswer(_Answer):
    """A read, chat or group action's answer: ``data.status`` and the result under ``data.<key>``."""

    status: Success
    data: ActionData


class SandboxAnswer(_Answer):
    """A sandbox control's result."""

    status: Success


class CloudReceived(_Answer):
    """``POST /cloud/{id}/webhook``: a signed notification from Meta was taken (``events`` delivered)."""

    status: Success
    events: int


class NodeBrief(_Answer):
    """One hub node on the shared database."""

    id: str
    address: str | None
    capacity: int = Field(description="instances it may run")
    owned: int = Field(description="instances it holds a lease of now")
    lastHeartbeatAt: int
    startedAt: int
    live: bool = Field(description="heartbeat within NODE_LEASE_TTL_SECONDS")
    self: bool = Field(description="the node that answered")


class NodesAnswer(_Answer):
    """``GET /nodes``: the answering node's id, whether leases are on, and every node."""

    status: Success
    node: str
    leases: bool
    nodes: list[NodeBrief]
