"""Runtime: the hub that wires policy (domain) to adapters (store, engines)."""
