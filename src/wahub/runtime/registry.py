"""The live instances: each instance row's in-memory companion, looked up by id or by name."""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from wahub.domain import chatid
from wahub.domain.errors import NotFound
from wahub.domain.lifecycle import State
from wahub.engines import base as eng
from wahub.store.records import InstanceRecord

if TYPE_CHECKING:
    from wahub.runtime.degraded import DegradedWatch
    from wahub.runtime.sendloop import SendLoop
    from wahub.runtime.supervisor import Supervisor

_NAME_LIKE = re.compile(r"[A-Za-z0-9_.\-]{1,100}")


@dataclass
class InstanceRuntime:
    """In-memory companion of one instance row: its engine, tasks and live connection facts."""

    record: InstanceRecord
    state: State
    state_since: int
    state_reason: str | None = None
    engine: eng.Engine | None = None
    qr: str | None = None
    qr_at: int | None = None
    pair_code: str | None = None
    phone: str | None = None
    push_name: str | None = None
    last_error: str | None = None
    restricted_until: int | None = None
    pending_acks: dict[str, tuple[str, int]] = field(default_factory=dict)
    owner: str | None = None  # the node that runs the instance (several nodes: from its lease)
    lease_valid: Callable[[], bool] | None = None  # several nodes: whether this node surely still holds it
    sendloop: SendLoop = field(init=False)
    supervisor: Supervisor = field(init=False)
    watch: DegradedWatch = field(init=False)

    @property
    def id(self) -> str:
        """The instance id."""
        return self.record.id

    @property
    def typing(self) -> bool | None:
        """The instance's own typing-indicator setting (None: ``TYPING_INDICATOR_ENABLED`` decides)."""
        return self.record.typing_indicator_enabled


class Registry(dict[str, InstanceRuntime]):
    """Instance id → runtime, with the API's lookup rules."""

    # Several nodes: refuses an instance another node runs (Conflict naming the owner); None with one node.
    must_run_here: Callable[[InstanceRuntime], None] | None = None

    def get_rt(self, instance_id: str) -> InstanceRuntime:
        """The runtime of an instance. Raises :class:`NotFound`."""
        rt = self.lookup(instance_id)
        if rt is None:
            raise NotFound(f"instance {instance_id} not found")
        return rt

    def engine_rt(self, instance_id: str) -> InstanceRuntime:
        """The runtime of an instance whose engine this node runs (for engine-bound calls).

        Raises :class:`NotFound`, or Conflict naming the node that runs it.
        """
        rt = self.get_rt(instance_id)
        if self.must_run_here is not None:
            self.must_run_here(rt)
        return rt

    def lookup(self, instance_id: str) -> InstanceRuntime | None:
        """By id; or, like the existing wa-hub, by a domain-like name whose sanitised form is the id
        (``WASP-shop.myshopify.com`` → ``WASP-shop_myshopify_com``). Nothing else is rewritten, so
        an arbitrary string can never address another instance."""
        rt = dict.get(self, instance_id)
        if rt is None and _NAME_LIKE.fullmatch(instance_id):
            rt = dict.get(self, chatid.instance_id_from_name(instance_id))
        return rt
