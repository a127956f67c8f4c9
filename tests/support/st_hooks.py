"""Schemathesis hooks for the OpenAPI pass (loaded through ``SCHEMATHESIS_HOOKS``).

Every generated request comes from a client address of its own (``X-Forwarded-For``, which the
server trusts from loopback only): the failed-key brake is per client, and the pass deliberately
sends wrong and missing keys (the ``ignored_auth`` probes copy their parent's headers), so from one
address the brake would close after ten and every later answer would be 429 instead of the answer
under test. The brake itself is tested in ``tests/integration/test_auth_brake.py``.

A generated webhook URL keeps its shape but names 127.0.0.1 instead of a generated host name, so
the server's URL check never asks a resolver about it and deliveries stay on loopback.
"""

from __future__ import annotations

import ipaddress
import itertools
import re
from typing import Any
from urllib.parse import urlsplit

import schemathesis

_clients = itertools.count(1)


@schemathesis.hook
def before_call(context: Any, case: Any, kwargs: dict[str, Any]) -> None:
    """Give the request a client address nobody else uses (10.x.y.z)."""
    n = next(_clients)
    case.headers = {**(case.headers or {}), "X-Forwarded-For": f"10.{n >> 16 & 255}.{n >> 8 & 255}.{n & 255}"}
    webhook = case.body.get("webhook") if isinstance(case.body, dict) else None
    if isinstance(webhook, dict) and isinstance(webhook.get("url"), str):
        webhook["url"] = _on_loopback(webhook["url"])


def _on_loopback(url: str) -> str:
    """``url`` with a host name (not an address literal) replaced by 127.0.0.1."""
    try:
        host = urlsplit(url).hostname
    except ValueError:
        return url
    if not host:
        return url
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return re.sub(re.escape(host), "127.0.0.1", url, count=1, flags=re.IGNORECASE)
    return url
