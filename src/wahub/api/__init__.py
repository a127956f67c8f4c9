"""HTTP API: WaAPI-compatible routes, native routes, sandbox controls."""
