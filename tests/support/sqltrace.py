"""Statements SQLite itself ran, traced at the driver (sqlite3's trace callback).

Counting at the driver sees every statement, also those the store runs on the driver's connection
without SQLAlchemy (``wahub.store.sql.direct``), which SQLAlchemy's cursor events never see.
"""

from __future__ import annotations

from sqlalchemy.ext.asyncio import AsyncEngine


async def trace(engine: AsyncEngine) -> list[str]:
    """Trace the one pooled connection of a SQLite ``engine``: the returned list fills as statements run."""
    seen: list[str] = []
    async with engine.connect() as conn:
        driver = (await conn.get_raw_connection()).driver_connection
        assert driver is not None
        await driver.set_trace_callback(seen.append)
    return seen


def transactions(statements: list[str]) -> list[list[str]]:
    """The traced statements grouped by transaction (``BEGIN`` … ``COMMIT``/``ROLLBACK``), those between left out."""
    groups: list[list[str]] = []
    current: list[str] | None = None
    for text in statements:
        word = text.split(None, 1)[0].upper() if text.strip() else ""
        if word == "BEGIN":
            current = []
        elif word in ("COMMIT", "ROLLBACK") and current is not None:
            groups.append([*current, word])
            current = None
        elif current is not None:
            current.append(text)
    return groups
