"""Webhook URLs checked against :mod:`wahub.domain.webhookurl` after DNS, when set and when connecting.

Two checks, because a name can change what it points to (DNS rebinding): :meth:`UrlGuard.checked`
refuses a URL when it is set (400 naming ``webhook.url``) if its name resolves to a refused address;
:class:`wahub.runtime.hookclient.HookClient` (the dispatcher's HTTP client) resolves the name itself
at every new connection with :func:`resolve_checked`, checks every address, and connects to the checked
address — so the address that was judged is the address that is dialled, and a name that turned into
169.254.169.254 after it was accepted gets a connection error, never a request. Proxies from the
environment are not used (they would dial for us). Media fetched for ``send-media`` goes through
:class:`GuardedTransport`, the same check for httpx.

A name that does not resolve when it is set is accepted (the receiver may not be deployed yet); it is
judged at every connection.
"""

from __future__ import annotations

import asyncio
import ipaddress
import socket
from collections.abc import Awaitable, Callable, Iterable
from typing import Any

import httpcore
import httpx

from wahub.domain import webhookurl
from wahub.domain.errors import InvalidInput

#: Resolves ``(host, port)`` to its addresses; the seam tests use to map a name without DNS.
Resolver = Callable[[str, int], Awaitable[list[str]]]


async def system_resolver(host: str, port: int) -> list[str]:
    """The addresses of ``host`` from the system resolver (getaddrinfo, off the event loop)."""
    infos = await asyncio.get_running_loop().getaddrinfo(host, port, type=socket.SOCK_STREAM)
    return list(dict.fromkeys(str(info[4][0]) for info in infos))


class Refused(Exception):
    """The host of a webhook URL resolves to an address the policy refuses."""


async def resolve_checked(host: str, port: int, policy: webhookurl.Policy, resolver: Resolver) -> list[str]:
    """The addresses of ``host``, each allowed by ``policy``. Raises Refused, or OSError when it does not resolve.

    One refused address refuses the name: a name that mixes a public and a metadata address is a trap.
    """
    by_name = webhookurl.refusal_by_name(host, policy)
    if by_name is not None:
        raise Refused(by_name)
    literal = webhookurl.literal_ip(host)
    addresses = [str(literal)] if literal is not None else await resolver(host, port)
    for address in addresses:
        reason = policy.refusal(ipaddress.ip_address(address.split("%", 1)[0]))
        if reason is not None:
            raise Refused(f"{host} resolves to {address}: {reason}")
    if not addresses:
        raise OSError(f"{host} has no address")
    return addresses


class UrlGuard:
    """Validates webhook URLs when they are set (syntax, address classes after DNS)."""

    def __init__(self, policy: webhookurl.Policy, resolver: Resolver = system_resolver) -> None:
        self.policy = policy
        self.resolver = resolver

    async def checked(self, url: object) -> str | None:
        """``url`` when it may be used (None for none). Raises InvalidInput naming ``webhook.url``."""
        if url is None or url == "":
            return None
        target = webhookurl.parse(url)
        try:
            await resolve_checked(target.host, target.port, self.policy, self.resolver)
        except Refused as exc:
            raise InvalidInput(f"{webhookurl.FIELD} refused: {exc}") from None
        except OSError:
            pass  # not resolvable now: judged again at every connection
        return target.url


class GuardedBackend(httpcore.AsyncNetworkBackend):
    """An httpcore network backend that dials only addresses the policy allows (checked per connection)."""

    def __init__(self, policy: webhookurl.Policy, resolver: Resolver,
                 inner: httpcore.AsyncNetworkBackend | None = None) -> None:
        self.policy = policy
        self.resolver = resolver
        self.inner = inner or httpcore.AnyIOBackend()

    async def connect_tcp(self, host: str, port: int, timeout: float | None = None,  # noqa: ASYNC109
                          local_address: str | None = None,
                          socket_options: Iterable[Any] | None = None) -> httpcore.AsyncNetworkStream:
        """Resolve ``host``, refuse it if any address is refused, else connect to the first address that answers."""
        try:
            addresses = await resolve_checked(host, port, self.policy, self.resolver)
        except Refused as exc:
            raise httpcore.ConnectError(f"refused by the webhook address policy: {exc}") from None
        except OSError as exc:
            raise httpcore.ConnectError(f"cannot resolve {host}: {exc}") from None
        last: Exception | None = None
        for address in addresses:
            try:
                return await self.inner.connect_tcp(address, port, timeout=timeout, local_address=local_address,
                                                    socket_options=socket_options)
            except (httpcore.ConnectError, httpcore.ConnectTimeout) as exc:
                last = exc
        assert last is not None
        raise last

    async def connect_unix_socket(self, path: str, timeout: float | None = None,  # noqa: ASYNC109
                                  socket_options: Iterable[Any] | None = None) -> httpcore.AsyncNetworkStream:
        """Unix sockets are never a webhook target."""
        raise httpcore.ConnectError("unix sockets are not webhook targets")

    async def sleep(self, seconds: float) -> None:
        """Delegates to the inner backend."""
        await self.inner.sleep(seconds)


class GuardedTransport(httpx.AsyncHTTPTransport):
    """httpx's transport with its connection pool on a :class:`GuardedBackend`."""

    def __init__(self, policy: webhookurl.Policy, resolver: Resolver = system_resolver) -> None:
        super().__init__(trust_env=False)
        self._pool = httpcore.AsyncConnectionPool(ssl_context=httpx.create_ssl_context(trust_env=False),
                                                  max_connections=100, max_keepalive_connections=20,
                                                  keepalive_expiry=5.0, network_backend=GuardedBackend(policy,
                                                                                                       resolver))
