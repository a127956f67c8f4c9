"""Which webhook URLs wa-hub may post to: syntax, address classes, and how a URL is shown.

Webhooks are requests the server makes on a client's behalf, so an unchecked URL lets anyone with the
API key reach what only the server can (server-side request forgery): a cloud metadata service, an
admin port on localhost, the internal network. The rules:

* ``http`` or ``https`` with a host; no whitespace or control characters; at most 2,000 characters.
* Link-local addresses (169.254.0.0/16, fe80::/10) and known cloud-metadata endpoints are refused
  always, as are unspecified, multicast and reserved addresses — no setting opens them.
* Loopback (127.0.0.0/8, ::1) and private ranges (10/8, 172.16/12, 192.168/16, 100.64/10, fc00::/7)
  are refused unless the policy allows them. The default allows loopback only, so an app on the same
  host keeps working (``WEBHOOK_ALLOWED_NETWORKS=loopback``); ``loopback,private`` also opens the LAN,
  ``none`` closes both.
* Credentials in a URL (``https://user:pass@host/``) are accepted (the receiver gets them as Basic
  auth) but never shown: :func:`redact` masks them wherever a URL is presented.

This module is pure: a name is classified here only by its literal form; the resolved addresses
are checked by :mod:`wahub.runtime.urlguard`, at validation and again at connect time.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass
from enum import StrEnum
from urllib.parse import SplitResult, urlsplit

from wahub.domain.errors import InvalidInput

MAX_URL_LENGTH = 2000
FIELD = "webhook.url"

IpAddress = ipaddress.IPv4Address | ipaddress.IPv6Address


class Reach(StrEnum):
    """The class of an address, from always allowed (public) to never allowed (link-local, metadata)."""

    PUBLIC = "public"
    LOOPBACK = "loopback"
    PRIVATE = "private"
    LINK_LOCAL = "link-local"
    METADATA = "cloud metadata"
    RESERVED = "reserved"


# Metadata services outside 169.254.0.0/16: AWS over IPv6, Alibaba Cloud, Oracle Cloud's v6 endpoint.
_METADATA = {ipaddress.ip_address("fd00:ec2::254"), ipaddress.ip_address("100.100.100.200"),
             ipaddress.ip_address("fd00:c1::a9fe:a9fe")}
_METADATA_NAMES = {"metadata", "metadata.google.internal", "metadata.goog", "instance-data",
                   "instance-data.ec2.internal"}
_SHARED = ipaddress.ip_network("100.64.0.0/10")  # carrier-grade NAT: private in practice
_NAT64 = ipaddress.ip_network("64:ff9b::/96")
_THIS_NETWORK = ipaddress.ip_network("0.0.0.0/8")  # Linux connects 0.x to the local host
_ALWAYS_REFUSED = {Reach.LINK_LOCAL, Reach.METADATA, Reach.RESERVED}


@dataclass(frozen=True)
class Policy:
    """Which refusable address classes are opened (link-local and metadata never are)."""

    allow_loopback: bool = True
    allow_private: bool = False

    def refusal(self, ip: IpAddress) -> str | None:
        """Why posting to ``ip`` is refused, or None when it is allowed."""
        reach = classify(ip)
        if reach in _ALWAYS_REFUSED:
            return f"{reach} addresses are never allowed"
        if reach is Reach.LOOPBACK and not self.allow_loopback:
            return "loopback addresses are not allowed (WEBHOOK_ALLOWED_NETWORKS)"
        if reach is Reach.PRIVATE and not self.allow_private:
            return "private network addresses are not allowed (WEBHOOK_ALLOWED_NETWORKS=loopback,private opens them)"
        return None


def parse_policy(value: str) -> Policy:
    """``WEBHOOK_ALLOWED_NETWORKS``: a comma list of ``loopback`` and ``private``, or ``none``.

    Raises ValueError naming an unknown word.
    """
    words = {w.strip().lower() for w in value.split(",") if w.strip()}
    unknown = words - {"loopback", "private", "none"}
    if unknown:
        raise ValueError(f"WEBHOOK_ALLOWED_NETWORKS: unknown {sorted(unknown)}; use loopback, private or none")
    return Policy(allow_loopback="loopback" in words, allow_private="private" in words)


def classify(ip: IpAddress) -> Reach:
    """The class of ``ip``; IPv4 addresses embedded in IPv6 (mapped, NAT64) are judged as IPv4."""
    if isinstance(ip, ipaddress.IPv6Address):
        if ip.ipv4_mapped is not None:
            return classify(ip.ipv4_mapped)
        if ip in _NAT64:
            return classify(ipaddress.IPv4Address(int(ip) & 0xFFFFFFFF))
    if ip in _METADATA:
        return Reach.METADATA
    if ip.is_link_local:
        return Reach.LINK_LOCAL
    if ip.is_loopback:
        return Reach.LOOPBACK
    if ip.is_unspecified or ip.is_multicast or ip.is_reserved or (
            isinstance(ip, ipaddress.IPv4Address) and ip in _THIS_NETWORK):
        return Reach.RESERVED
    if ip.is_private or (isinstance(ip, ipaddress.IPv4Address) and ip in _SHARED):
        return Reach.PRIVATE  # includes the documentation and benchmarking ranges, unreachable anyway
    return Reach.PUBLIC


@dataclass(frozen=True)
class Target:
    """A syntactically valid webhook URL: its host (lower case, no brackets) and port."""

    url: str
    host: str
    port: int


def parse(url: object) -> Target:
    """Check the form of a webhook URL. Raises InvalidInput naming ``webhook.url``."""
    if not isinstance(url, str) or len(url) > MAX_URL_LENGTH:
        raise InvalidInput(f"{FIELD} must be an http(s) URL of at most {MAX_URL_LENGTH} characters")
    if any(c.isspace() or ord(c) < 0x20 or ord(c) == 0x7F for c in url):
        raise InvalidInput(f"{FIELD} must not contain spaces or control characters")
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError:
        raise InvalidInput(f"{FIELD} is not a valid URL (bad host or port)") from None
    if parts.scheme.lower() not in ("http", "https"):
        raise InvalidInput(f"{FIELD} must be an http(s) URL")
    host = (parts.hostname or "").rstrip(".")
    if not host:
        raise InvalidInput(f"{FIELD} has no host: write it as https://host/path")
    problem = host_problem(host, bracketed="[" in parts.netloc)
    if problem is not None:
        raise InvalidInput(f"{FIELD} has an invalid host: {problem}")
    return Target(url=url, host=host, port=port or (443 if parts.scheme.lower() == "https" else 80))


def host_problem(host: str, *, bracketed: bool) -> str | None:
    """Why ``host`` is no host an HTTP client can dial, or None.

    An IPv6 address must be one (in brackets); a host of digits and dots must be a dotted-decimal
    IPv4 address (``1.2.3.999``, octal ``0177.0.0.1`` and similar are refused, not guessed); a name
    needs labels of 1 to 63 characters (253 in all) that encode as IDNA (RFC 1035 §2.3.4, RFC 5890).
    """
    if bracketed:
        try:
            ipaddress.IPv6Address(host.split("%", 1)[0])
        except ValueError:
            return f"{host} is not an IPv6 address"
        return None
    labels = host.split(".")
    if all(label.isdigit() for label in labels):
        try:
            ipaddress.IPv4Address(host)
        except ValueError:
            return f"{host} is not a dotted-decimal IPv4 address"
        return None
    if len(host) > 253 or any(not 0 < len(label) <= 63 for label in labels):
        return "each dot-separated label must have 1 to 63 characters (253 in all)"
    try:
        ascii_host = host.encode("idna")
        ascii_host.decode("idna")  # an ``xn--`` label must be real punycode
    except UnicodeError:
        return f"{host} is not a valid domain name"
    return None


def literal_ip(host: str) -> IpAddress | None:
    """``host`` as an address when it is written as one (``10.0.0.1``, ``::1``), else None."""
    try:
        return ipaddress.ip_address(host)
    except ValueError:
        return None


def refusal_by_name(host: str, policy: Policy) -> str | None:
    """Why ``host`` is refused from its written form alone (an address, a metadata or localhost name)."""
    ip = literal_ip(host)
    if ip is not None:
        reason = policy.refusal(ip)
        return f"{host}: {reason}" if reason else None
    name = host.lower()
    if name in _METADATA_NAMES:
        return f"{host}: cloud metadata addresses are never allowed"
    if (name == "localhost" or name.endswith(".localhost")) and not policy.allow_loopback:
        return f"{host}: loopback addresses are not allowed (WEBHOOK_ALLOWED_NETWORKS)"
    return None


def redact(url: str | None) -> str | None:
    """``url`` with any user name and password replaced by ``***`` (for the API, dashboard and logs)."""
    if not url or "@" not in url:
        return url
    try:
        parts = urlsplit(url)
    except ValueError:
        return "[invalid URL]"
    if "@" not in parts.netloc:
        return url
    host = parts.netloc.rsplit("@", 1)[1]
    return SplitResult(parts.scheme, f"***@{host}", parts.path, parts.query, parts.fragment).geturl()
