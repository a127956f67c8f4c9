"""Storage: one SQL schema behind one interface, on SQLite (default) or PostgreSQL."""
