"""The schema. Invariants live here as constraints, each with the reason it makes a claim safe.

Times are BIGINT epoch milliseconds. JSON payloads are TEXT (serialised by the store) so the
same bytes come back on both databases.
"""

from __future__ import annotations

from sqlalchemy import (
    BigInteger,
    Boolean,
    CheckConstraint,
    Column,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    UniqueConstraint,
    text,
)

from wahub.domain.outbox import ItemKind, ItemStatus

metadata = MetaData(naming_convention={
    "ix": "ix_%(table_name)s_%(column_0_N_name)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
})

ITEM_STATUSES = tuple(s.value for s in ItemStatus)
ITEM_KINDS = tuple(k.value for k in ItemKind)
STATES = ("initializing", "connecting", "needs_qr", "ready", "disconnected", "restricted",
          "error", "logged_out", "stopped")
EVENT_STATUSES = ("pending", "delivered", "dead")
ENGINES = ("sandbox", "whatsmeow", "cloud")

instances = Table(
    "instances", metadata,
    Column("id", String(120), primary_key=True),
    Column("name", String(200), nullable=False),
    Column("webhook_url", Text, nullable=True),
    Column("webhook_events", Text, nullable=False, server_default="[]"),  # JSON list; [] = all
    Column("webhook_secret", Text, nullable=True),  # per-instance; falls back to WEBHOOK_SECRET
    Column("state", String(20), nullable=False, server_default="initializing"),
    Column("state_since", BigInteger, nullable=False),
    Column("state_reason", Text, nullable=True),
    Column("restricted_until", BigInteger, nullable=True),
    Column("phone", String(32), nullable=True),
    Column("push_name", Text, nullable=True),
    Column("limit_per_minute", Integer, nullable=True),  # per-instance overrides; NULL = setting
    Column("limit_per_hour", Integer, nullable=True),
    Column("send_interval_ms", Integer, nullable=True),
    Column("last_error", Text, nullable=True),
    Column("created_at", BigInteger, nullable=False),
    # Which engine drives the instance, fixed at creation (WAHUB_ENGINE, or the request's choice):
    # the composite engine factory routes by it, so one hub runs several engines at once.
    Column("engine", Text, nullable=False),
    # Send settings (0003): country code completing national numbers (digits); typing indicator
    # (NULL = TYPING_INDICATOR_ENABLED) and the existing wa-hub's applyTypingTo (JSON list, kept as given).
    Column("default_country_code", String(4), nullable=True),
    Column("typing_indicator_enabled", Boolean, nullable=True),
    Column("apply_typing_to", Text, nullable=True),
    CheckConstraint(f"state IN {STATES!r}", name="state_known"),
    CheckConstraint(f"engine IN {ENGINES!r}", name="engine_known"),
)

# The items whose idempotency key was derived from their payload (DESIGN §3.1), as SQL text.
DERIVED_ONLY = "key_source = 'derived'"

outbox = Table(
    "outbox", metadata,
    Column("seq", Integer().with_variant(BigInteger, "postgresql"), primary_key=True, autoincrement=True),
    Column("queue_id", String(40), nullable=False, unique=True),
    Column("instance_id", String(120), ForeignKey("instances.id", ondelete="CASCADE"), nullable=False),
    Column("idempotency_key", String(220), nullable=False),
    Column("key_source", String(10), nullable=False),
    Column("kind", String(10), nullable=False),
    Column("chat_id", String(120), nullable=False),
    Column("payload", Text, nullable=False),
    Column("fingerprint", String(64), nullable=False),
    Column("status", String(12), nullable=False),
    Column("attempts", Integer, nullable=False, server_default="0"),
    Column("next_attempt_at", BigInteger, nullable=False),
    Column("created_at", BigInteger, nullable=False),
    Column("updated_at", BigInteger, nullable=False),
    Column("handed_over_at", BigInteger, nullable=True),
    Column("sent_at", BigInteger, nullable=True),
    Column("message_id", String(128), nullable=True),
    Column("ack", String(12), nullable=True),
    Column("last_error", Text, nullable=True),
    Column("error_reason", String(40), nullable=True),
    # The message id the engine was asked to send under, stored *before* the call: a later receipt
    # or from-me echo of this id proves an `uncertain` send reached WhatsApp.
    Column("chosen_message_id", String(128), nullable=True),
    # When `message_uncertain` was stored for this item (0006): an uncertain item with none is
    # reported at the next start, so a stop between "uncertain" and its report loses no report.
    Column("uncertain_reported_at", BigInteger, nullable=True),
    CheckConstraint(f"status IN {ITEM_STATUSES!r}", name="status_known"),
    CheckConstraint(f"kind IN {ITEM_KINDS!r}", name="kind_known"),
    CheckConstraint("attempts >= 0", name="attempts_non_negative"),
    # A key names one message per instance: concurrent identical requests race on this
    # constraint, the loser reads the winner's row, so a key can never produce two items.
    UniqueConstraint("instance_id", "idempotency_key", name="uq_outbox_instance_key"),
)
# At most one item in flight per instance, enforced by the database: a second claim while one
# item is `sending` fails on this index, so two send loops (or two nodes) can never both send.
Index("uq_outbox_one_sending", outbox.c.instance_id, unique=True,
      sqlite_where=text("status = 'sending'"), postgresql_where=text("status = 'sending'"))
# The claim query: FIFO among due queued items of one instance.
Index("ix_outbox_claim", outbox.c.instance_id, outbox.c.status, outbox.c.next_attempt_at, outbox.c.seq)
# Lookups by message id (acks, votes, replies, the evidence of an uncertain send) are equalities, so
# the rows without one yet (every queued item) stay out of these two (migration 0011): fewer pages
# written per enqueue commit.
Index("ix_outbox_message_id", outbox.c.instance_id, outbox.c.message_id,
      sqlite_where=text("message_id IS NOT NULL"), postgresql_where=text("message_id IS NOT NULL"))
Index("ix_outbox_created", outbox.c.created_at)
Index("ix_outbox_chosen_message_id", outbox.c.instance_id, outbox.c.chosen_message_id,
      sqlite_where=text("chosen_message_id IS NOT NULL"), postgresql_where=text("chosen_message_id IS NOT NULL"))
# The sliding window of derived keys looks up the newest item with the same payload; only items whose
# key was derived are looked up, so only they are indexed (migration 0011; the query names 'derived'
# as text so the planner may use the partial index).
Index("ix_outbox_fingerprint", outbox.c.instance_id, outbox.c.fingerprint, outbox.c.seq,
      sqlite_where=text(DERIVED_ONLY), postgresql_where=text(DERIVED_ONLY))
# SQLite only (migration 0010): `outbox_open` holds each instance's open (queued, sending) items, kept
# by triggers on `outbox` in every write's own transaction, so an enqueue batch reads its queue depths
# without counting the queue. A migration that rebuilds `outbox` (batch_alter_table) must recreate them.
# PostgreSQL only (migration 0012): `outbox_open_delta` holds the changes of those counts, inserted by
# triggers (never updated, so writers never wait on a counter row); an instance's open items are the
# sum of its rows.
# Tables a migration keeps outside this metadata; autogenerate leaves them alone (store/migrate.py).
NOT_IN_METADATA = frozenset({"outbox_open", "outbox_open_delta"})

# Finished items of a deleted instance (0006), kept for the retention period: re-creating the same
# instance id (logout deletes it, as the existing wa-hub does) moves them back, so an idempotency key
# or a derived key that was already sent is answered as a replay, never sent again. No foreign key:
# the instance row is gone while they wait.
outbox_retired = Table(
    "outbox_retired", metadata,
    *(Column(c.name, c.type, nullable=c.nullable) for c in outbox.columns if c.name != "seq"),
    Column("seq", Integer().with_variant(BigInteger, "postgresql"), primary_key=True, autoincrement=True),
    UniqueConstraint("queue_id", name="uq_outbox_retired_queue_id"),
)
Index("ix_outbox_retired_instance", outbox_retired.c.instance_id, outbox_retired.c.seq)
Index("ix_outbox_retired_updated", outbox_retired.c.updated_at)

send_log = Table(
    "send_log", metadata,
    # One row per hand-over to the engine, written in the same transaction that marks the item
    # handed over, so rolling windows count every send that may have reached WhatsApp, even
    # across crashes. Not cascaded with the outbox: clearing a queue must not reset the windows.
    Column("id", Integer().with_variant(BigInteger, "postgresql"), primary_key=True, autoincrement=True),
    Column("instance_id", String(120), nullable=False),
    Column("at", BigInteger, nullable=False),
    Column("queue_id", String(40), nullable=False),
)
Index("ix_send_log_instance_at", send_log.c.instance_id, send_log.c.at)

events = Table(
    "webhook_events", metadata,
    Column("seq", Integer().with_variant(BigInteger, "postgresql"), primary_key=True, autoincrement=True),
    Column("event_id", String(40), nullable=False, unique=True),  # stable across attempts
    Column("instance_id", String(120), nullable=False),
    Column("event", String(40), nullable=False),
    Column("body", Text, nullable=False),  # the exact bytes (UTF-8) that are signed and sent
    Column("status", String(10), nullable=False),
    Column("attempts", Integer, nullable=False, server_default="0"),
    Column("next_attempt_at", BigInteger, nullable=False),
    Column("created_at", BigInteger, nullable=False),
    Column("delivered_at", BigInteger, nullable=True),
    Column("last_error", Text, nullable=True),
    Column("last_status_code", Integer, nullable=True),
    CheckConstraint(f"status IN {EVENT_STATUSES!r}", name="status_known"),
)
Index("ix_events_pending", events.c.instance_id, events.c.status, events.c.seq)

polls = Table(
    "polls", metadata,
    # The poll as sent, so votes (which whatsmeow reports as option hashes) resolve to text and
    # can be matched to their order even after a restart.
    Column("instance_id", String(120), primary_key=True),
    Column("message_id", String(128), primary_key=True),
    Column("queue_id", String(40), nullable=False),
    Column("chat_id", String(120), nullable=False),
    Column("idempotency_key", String(220), nullable=False),
    Column("caption", Text, nullable=False),
    Column("options", Text, nullable=False),  # JSON list
    Column("multiple", Integer, nullable=False, server_default="0"),
    Column("created_at", BigInteger, nullable=False),
)

votes = Table(
    "votes", metadata,
    Column("instance_id", String(120), primary_key=True),
    Column("poll_message_id", String(128), primary_key=True),
    Column("voter", String(120), primary_key=True),
    Column("timestamp", BigInteger, nullable=False),  # the vote's own time (from WhatsApp)
    Column("selected", Text, nullable=False),  # JSON list of option names
    Column("voter_alt", String(120), nullable=True),
    Column("updated_at", BigInteger, nullable=False),
)

inbound_seen = Table(
    "inbound_seen", metadata,
    # Written only in the transaction that stores the `message` webhook event, so a message is
    # never marked seen without its event being stored for delivery.
    Column("instance_id", String(120), primary_key=True),
    Column("message_id", String(128), primary_key=True),
    Column("seen_at", BigInteger, nullable=False),
)

identities = Table(
    "identities", metadata,
    # One person, two ids: the hidden-number id WhatsApp names many users by and their phone id,
    # learned from an inbound message or vote that carried both. Lets a later event under one id
    # be matched to the other (``fromAlt``, one voter per person).
    Column("instance_id", String(120), primary_key=True),
    Column("lid", String(120), primary_key=True),
    Column("phone", String(120), nullable=False),
    Column("updated_at", BigInteger, nullable=False),
    Index("ix_identities_phone", "instance_id", "phone"),
)

number_ids = Table(
    "number_ids", metadata,
    # WhatsApp's answer to "who is this number" before the first send to it (IsOnWhatsApp): a typed
    # number may be known under another id (Brazil without the ninth digit, Mexico's 521…), or not at
    # all (resolved NULL). One row per typed id keeps both forms; checked_at lets the answer expire.
    Column("instance_id", String(120), primary_key=True),
    Column("typed", String(120), primary_key=True),
    Column("resolved", String(120), nullable=True),
    Column("checked_at", BigInteger, nullable=False),
)

transitions = Table(
    "transitions", metadata,
    Column("id", Integer().with_variant(BigInteger, "postgresql"), primary_key=True, autoincrement=True),
    Column("instance_id", String(120), nullable=False),
    Column("at", BigInteger, nullable=False),
    Column("from_state", String(20), nullable=False),
    Column("to_state", String(20), nullable=False),
    Column("reason", Text, nullable=True),
)
Index("ix_transitions_instance_at", transitions.c.instance_id, transitions.c.at)

restarts = Table(
    "restarts", metadata,
    # Persisted restart budget: counted from these rows, so a process restart cannot reset it.
    Column("id", Integer().with_variant(BigInteger, "postgresql"), primary_key=True, autoincrement=True),
    Column("instance_id", String(120), nullable=False),
    Column("at", BigInteger, nullable=False),
    Column("kind", String(10), nullable=False),
    Column("reason", Text, nullable=True),
)
Index("ix_restarts_instance_at", restarts.c.instance_id, restarts.c.at)

cloud_credentials = Table(
    "cloud_credentials", metadata,
    # One sealed credentials value per cloud instance. The cascade deletes the secrets with their
    # instance, so a deleted shop's token can never be opened again.
    Column("instance_id", String(120), ForeignKey("instances.id", ondelete="CASCADE"), primary_key=True),
    # Fernet token of the account (access token, app secret, verify token inside): opaque and
    # authenticated, so a database dump shows no secret and a tampered value refuses to open.
    Column("sealed", Text, nullable=False),
    # Unique: Meta's webhook calls for a phone number reach exactly one instance, and two shops can
    # never send as the same number (and share its rate limits) by mistake.
    Column("phone_number_id", Text, nullable=False, unique=True),
    Column("updated_at", BigInteger, nullable=False),
)

cloud_chat_inbound = Table(
    "cloud_chat_inbound", metadata,
    # When each chat last wrote to a cloud instance (message or button reply): the 24-hour service
    # window is judged from it before a free-form send is accepted. Cascaded with the instance.
    Column("instance_id", String(120), ForeignKey("instances.id", ondelete="CASCADE"), primary_key=True),
    Column("chat_id", String(120), primary_key=True),
    Column("last_inbound_at", BigInteger, nullable=False),
)

nodes = Table(
    "nodes", metadata,
    # Hub nodes sharing this database (PostgreSQL only; a single SQLite node never writes here).
    # A node whose heartbeat is older than the lease TTL counts as gone when shares are computed.
    Column("id", String(120), primary_key=True),
    Column("address", Text, nullable=True),
    Column("capacity", Integer, nullable=False),
    Column("heartbeat_at", BigInteger, nullable=False),
    Column("started_at", BigInteger, nullable=False),
)

leases = Table(
    "leases", metadata,
    # Which node runs an instance, until when, under which fencing token. ``token`` only grows: each
    # claim adds one, and every write that matters checks (owner, token) against this row, so a node
    # that lost the lease is refused by the database. ``owner`` NULL: free (given up or never claimed).
    Column("instance_id", String(120), ForeignKey("instances.id", ondelete="CASCADE"), primary_key=True),
    Column("owner", String(120), nullable=True),
    Column("token", BigInteger, nullable=False),
    Column("expires_at", BigInteger, nullable=False),
    Index("ix_leases_owner", "owner"),
)
