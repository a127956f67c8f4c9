"""Which instance leases this node holds, as the store last claimed or renewed them (both backends)."""

from __future__ import annotations

from collections.abc import Callable


class HeldLeases:
    """This node's held lease tokens; the backends' fenced writes check them (SQL in the database too)."""

    _fence_node: str | None = None  # set by fence_as: writes then check this node's leases
    _held_tokens: dict[str, int] | None = None  # instance id -> token of the lease this node holds
    _on_fenced: Callable[[str], None] | None = None

    def fence_as(self, node_id: str, *, on_lost: Callable[[str], None] | None = None) -> None:
        """From now on, fence the writes of instances by this node's leases (``on_lost``: a write was refused)."""
        self._fence_node = node_id
        self._on_fenced = on_lost
        if self._held_tokens is None:
            self._held_tokens = {}

    def holds(self, instance_id: str) -> bool:
        """Whether this node holds the instance's lease (as last claimed or renewed); always without fencing."""
        return self._held_tokens is None or instance_id in self._held_tokens

    def forget_lease(self, instance_id: str) -> None:
        """Refuse this node's writes for the instance from now on (fenced out or given up)."""
        if self._held_tokens is not None:
            self._held_tokens.pop(instance_id, None)
