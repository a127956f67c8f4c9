"""A small client for the parts of Meta's Graph API the cloud engine uses (httpx, bearer token).

Policy lives here (paths, headers, timeouts, error translation); bytes go through an httpx
transport that tests swap for a mock or point at a local mock server (``base_url``). Requests
follow Meta's OpenAPI description of the Cloud API v23.0 (``POST /{version}/{phone-number-id}/messages``,
``GET /{version}/{phone-number-id}``) and are contract-tested against it.

Raises :class:`~wahub.engines.cloud.errors.GraphError` when Graph answers with an error object (or
a non-2xx status) and :class:`~wahub.engines.cloud.errors.GraphUnreachable` when it does not answer.
The access token is sent only in the ``Authorization`` header and never logged.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

import httpx

from wahub.engines.cloud.errors import GraphError, GraphUnreachable

API_VERSION = "v23.0"
DEFAULT_BASE_URL = "https://graph.facebook.com"
USER_AGENT = "wa-hub/0.1.0"


@dataclass(frozen=True)
class PhoneNumberInfo:
    """What ``GET /{phone-number-id}`` tells about the number (the credentials check)."""

    id: str
    display_phone_number: str | None = None
    verified_name: str | None = None


def text_message(body: str) -> dict[str, Any]:
    """The ``type`` + content part of a text message (links are not previewed)."""
    return {"type": "text", "text": {"body": body, "preview_url": False}}


class GraphClient:
    """One access token's view of the Graph API. Timeouts in seconds."""

    def __init__(self, access_token: str, *, base_url: str = DEFAULT_BASE_URL, api_version: str = API_VERSION,
                 timeout_s: float = 15.0, connect_timeout_s: float = 5.0,
                 transport: httpx.AsyncBaseTransport | None = None) -> None:
        self.api_version = api_version
        self._http = httpx.AsyncClient(
            base_url=base_url.rstrip("/"), transport=transport, follow_redirects=False,
            timeout=httpx.Timeout(timeout_s, connect=connect_timeout_s),
            headers={"Authorization": f"Bearer {access_token}", "User-Agent": USER_AGENT})

    async def aclose(self) -> None:
        """Close the connection pool."""
        await self._http.aclose()

    async def phone_number(self, phone_number_id: str) -> PhoneNumberInfo:
        """The cheap credentials check: read the phone number the token should reach."""
        data = await self._request("GET", f"/{self.api_version}/{phone_number_id}",
                                   params={"fields": "id,display_phone_number,verified_name"})
        return PhoneNumberInfo(id=str(data.get("id") or phone_number_id),
                               display_phone_number=_opt_str(data.get("display_phone_number")),
                               verified_name=_opt_str(data.get("verified_name")))

    async def send(self, phone_number_id: str, to: str, content: dict[str, Any]) -> str:
        """Send one message to ``to`` (digits); ``content`` is its ``type`` + object. Returns the ``wamid``."""
        body = {"messaging_product": "whatsapp", "recipient_type": "individual", "to": to, **content}
        data = await self._request("POST", f"/{self.api_version}/{phone_number_id}/messages", json_body=body)
        messages = data.get("messages")
        if not isinstance(messages, list) or not messages or not isinstance(messages[0], dict) \
                or not messages[0].get("id"):
            raise GraphError(-1, "the send answer carries no message id", http_status=200)
        return str(messages[0]["id"])

    async def _request(self, method: str, path: str, *, params: dict[str, str] | None = None,
                       json_body: dict[str, Any] | None = None) -> dict[str, Any]:
        content = json.dumps(json_body, ensure_ascii=False).encode("utf-8") if json_body is not None else None
        headers = {"Content-Type": "application/json"} if content is not None else None
        try:
            response = await self._http.request(method, path, params=params, content=content, headers=headers)
        except httpx.TimeoutException as exc:
            sent = not isinstance(exc, httpx.ConnectTimeout | httpx.PoolTimeout)
            raise GraphUnreachable(f"Graph API timed out ({type(exc).__name__})", reason="timeout",
                                   maybe_sent=sent) from exc
        except httpx.ConnectError as exc:
            raise GraphUnreachable(f"cannot connect to the Graph API: {exc}", reason=_connect_reason(exc),
                                   maybe_sent=False) from exc
        except httpx.TransportError as exc:  # the connection broke after the request was written
            raise GraphUnreachable(f"Graph API connection failed: {exc}", reason="network",
                                   maybe_sent=True) from exc
        return _decode(response)


def _decode(response: httpx.Response) -> dict[str, Any]:
    try:
        data = response.json()
    except ValueError:
        data = None
    if response.is_success and isinstance(data, dict) and "error" not in data:
        return data
    error = data.get("error") if isinstance(data, dict) else None
    if isinstance(error, dict):
        raise GraphError(_int(error.get("code"), -1), str(error.get("message") or "unknown error"),
                         subcode=_int(error.get("error_subcode"), None), http_status=response.status_code,
                         title=_opt_str(error.get("error_user_title") or error.get("type")),
                         trace_id=_opt_str(error.get("fbtrace_id")))
    raise GraphError(-1, f"HTTP {response.status_code} without a Graph error object",
                     http_status=response.status_code)


def _connect_reason(exc: httpx.ConnectError) -> str:
    text = str(exc).lower()
    if "name or service" in text or "nodename" in text or "getaddrinfo" in text or "name resolution" in text:
        return "dns"
    if "ssl" in text or "certificate" in text or "tls" in text:
        return "tls"
    if "refused" in text:
        return "refused"
    return "network"


def _int(value: object, default: int | None) -> Any:
    try:
        return int(value)  # type: ignore[call-overload]
    except (TypeError, ValueError):
        return default


def _opt_str(value: object) -> str | None:
    return str(value) if value not in (None, "") else None
