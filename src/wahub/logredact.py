"""Last-line masking of log values: phone numbers and SQL parameters inside any text, tracebacks included.

Key-based redaction (``observability``) hides fields whose name says they are secret; this pass reads
every string value after the traceback has been rendered into the line, because error messages from
libraries carry data of their own: a WhatsApp id in an engine error (``201000000001@s.whatsapp.net``),
a ``[parameters: ...]`` block from a database driver. A phone number keeps its last four digits (enough
to tell two apart in a log), everything else of it becomes ``*``.
"""

from __future__ import annotations

import re
from collections.abc import MutableMapping
from typing import Any

# 8 to 15 digits (E.164 allows 15), optionally with a leading +, not part of a longer word or number.
_PHONE = re.compile(r"(?<![\w.+-])\+?(\d{4,11})(\d{4})(?![\w])")
# Values wa-hub writes itself (stamps, level, generated hex ids, names of events and kinds): nothing to mask.
OWN_KEYS = frozenset(("timestamp", "level", "logger", "event", "queue_id", "event_id", "request_id", "kind",
                       "key_source", "webhook_event"))
_SQL_PARAMETERS = re.compile(r"\[parameters: [^\n]*\]")  # SQLAlchemy writes the block on one line


def mask_text(text: str) -> str:
    """``text`` with phone-number-like digit runs and SQL parameter blocks masked."""
    if "[parameters: " in text:
        text = _SQL_PARAMETERS.sub("[parameters hidden]", text)
    return _PHONE.sub(lambda m: "*" * len(m.group(1)) + m.group(2), text)


def mask_values(_logger: Any, _method: str, event_dict: MutableMapping[str, Any]) -> MutableMapping[str, Any]:
    """structlog processor: :func:`mask_text` on every string value (run after the traceback is formatted)."""
    for key, value in event_dict.items():
        if isinstance(value, str) and key not in OWN_KEYS:
            event_dict[key] = mask_text(value)
    return event_dict
