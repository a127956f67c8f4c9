"""Pure rules of wa-hub: no I/O, no clock reads, no randomness (all injected)."""
