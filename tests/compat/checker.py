"""Compare an answer with a golden shape field by field; read the allowed deviations from the docs."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

DOC = Path(__file__).resolve().parents[2] / "docs" / "compatibility.md"
_ISO = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?(Z|[+-]\d\d:\d\d)")


def _matches(alt: str, value: Any) -> bool:
    if alt.startswith("="):
        literal = alt[1:]
        try:
            expected = json.loads(literal.lower() if literal in ("True", "False") else literal)
        except json.JSONDecodeError:
            expected = literal
        return bool(value == expected and type(value) is type(expected))
    checks = {
        "str": lambda v: isinstance(v, str), "int": lambda v: isinstance(v, int) and not isinstance(v, bool),
        "num": lambda v: isinstance(v, int | float) and not isinstance(v, bool),
        "bool": lambda v: isinstance(v, bool), "null": lambda v: v is None, "list": lambda v: isinstance(v, list),
        "obj": lambda v: isinstance(v, dict), "any": lambda v: True,
        "iso": lambda v: isinstance(v, str) and bool(_ISO.fullmatch(v)),
    }
    return checks[alt](value)


def diff(shape: Any, value: Any, path: str = "") -> list[str]:
    """Differences between ``value`` and the golden ``shape`` as ``"<path>: <what>"`` lines (empty = same)."""
    here = path or "(body)"
    if isinstance(shape, dict):
        if not isinstance(value, dict):
            return [f"{here}: expected an object, got {json.dumps(value)[:60]}"]
        out: list[str] = []
        for key, sub in shape.items():
            child = f"{path}.{key}" if path else key
            if key not in value:
                out.append(f"{child}: missing")
            else:
                out.extend(diff(sub, value[key], child))
        return out
    if isinstance(shape, list):
        if not isinstance(value, list):
            return [f"{here}: expected an array, got {json.dumps(value)[:60]}"]
        return [d for i, item in enumerate(value) for d in diff(shape[0], item, f"{path}[{i}]")]
    if any(_matches(alt, value) for alt in shape.split("|")):
        return []
    return [f"{here}: expected {shape}, got {json.dumps(value)[:80]}"]


def normalise(line: str) -> str:
    """A difference without array indices (``items[3].age`` → ``items[].age``)."""
    return re.sub(r"\[\d+\]", "[]", line.split(":", 1)[0])


def documented() -> set[str]:
    """Allowed deviations: every ``compat:<case> <field>`` tag in docs/compatibility.md."""
    return {m.strip() for m in re.findall(r"`compat:([^`]+)`", DOC.read_text(encoding="utf-8"))}


def undocumented(case: str, differences: list[str]) -> list[str]:
    """The differences of ``case`` not listed in docs/compatibility.md."""
    allowed = documented()
    return [d for d in differences if f"{case} {normalise(d)}" not in allowed]
