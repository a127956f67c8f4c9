"""Per-instance send settings as the API names them, checked and mapped to store columns.

* ``defaultCountryCode``: the country code (1-3 digits, an optional ``+``) that completes a national
  number written with a leading 0 (``01000000001`` with ``20`` → ``201000000001``); null removes it.
* ``typingIndicatorEnabled``: show "typing…" before each text (true/false); null follows
  ``TYPING_INDICATOR_ENABLED``.
* ``applyTypingTo``: the existing wa-hub's list (``["customer"]``, ``["customer", "merchant"]``), stored and
  reported as given. That hub never consulted it when sending, and neither does this one: a gateway
  cannot tell a customer's chat from a merchant's.
"""

from __future__ import annotations

import re
from typing import Any

from wahub.domain.errors import InvalidInput

# API name → store column
FIELDS = {"defaultCountryCode": "default_country_code", "typingIndicatorEnabled": "typing_indicator_enabled",
          "applyTypingTo": "apply_typing_to"}
_COUNTRY_CODE = re.compile(r"\+?([1-9][0-9]{0,2})")
_MAX_TARGETS = 10
_MAX_TARGET_LEN = 40


def pick(body: dict[str, Any]) -> dict[str, Any]:
    """The send-setting fields present in a request body (API names, values unchecked)."""
    return {name: body[name] for name in FIELDS if name in body}


def columns(settings: dict[str, Any]) -> dict[str, Any]:
    """Check API-named settings and return them as store columns. Raises InvalidInput naming the field."""
    out: dict[str, Any] = {}
    for name, value in settings.items():
        if name not in FIELDS:
            raise InvalidInput(f"unknown setting {name!r}; known: {', '.join(FIELDS)}")
        out[FIELDS[name]] = _CHECKS[name](value)
    return out


def country_code(value: Any) -> str | None:
    """``defaultCountryCode`` as digits (``"+20"``, ``"20"`` and ``20`` → ``"20"``), None when unset."""
    if value is None or value == "":
        return None
    if isinstance(value, int) and not isinstance(value, bool):
        value = str(value)
    match = _COUNTRY_CODE.fullmatch(value) if isinstance(value, str) else None
    if match is None:
        raise InvalidInput("defaultCountryCode must be a country calling code of 1 to 3 digits (e.g. \"20\" for "
                           "Egypt), or null")
    return match.group(1)


def typing_enabled(value: Any) -> bool | None:
    """``typingIndicatorEnabled``: true, false or null (the setting's default)."""
    if value is None or isinstance(value, bool):
        return value
    raise InvalidInput("typingIndicatorEnabled must be true, false or null")


def typing_targets(value: Any) -> list[str] | None:
    """``applyTypingTo``: a list of short names (kept as given), or null."""
    if value is None:
        return None
    if (not isinstance(value, list) or len(value) > _MAX_TARGETS
            or not all(isinstance(v, str) and 0 < len(v) <= _MAX_TARGET_LEN for v in value)):
        raise InvalidInput(f"applyTypingTo must be a list of at most {_MAX_TARGETS} names (e.g. [\"customer\"]), "
                           "or null")
    return list(dict.fromkeys(value))


_CHECKS = {"defaultCountryCode": country_code, "typingIndicatorEnabled": typing_enabled,
           "applyTypingTo": typing_targets}
