"""The webhook HTTP client against a raw loopback receiver: kept-alive connections, answers of every framing.

Everything here talks to a receiver on 127.0.0.1 run on the test's own event loop.
"""

from __future__ import annotations

import asyncio
import base64
import datetime
import ssl
from typing import Any

import httpx
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from tests.support.rawreceiver import HOLD, RawReceiver
from wahub.domain import webhookurl
from wahub.runtime.hookclient import HookClient

LOOPBACK = webhookurl.parse_policy("loopback")
H = {"content-type": "application/json", "webhook-id": "evt_1"}


async def test_forty_posts_to_one_receiver_travel_over_one_kept_alive_connection() -> None:
    async with RawReceiver() as rx:
        client = HookClient(LOOPBACK)
        for n in range(40):
            answer = await client.post(rx.url, f'{{"n":{n}}}'.encode(), H, 5)
            assert answer.status_code == 200
        await client.aclose()
    assert rx.connections == 1
    assert [body for _, _, body in rx.requests] == [f'{{"n":{n}}}'.encode() for n in range(40)]
    head = rx.requests[0][1].decode()
    assert head.startswith("POST /hook HTTP/1.1\r\n") and "\r\nwebhook-id: evt_1" in head
    assert f"\r\nhost: {rx.url.split('/')[2]}" in head


async def test_a_kept_alive_connection_the_receiver_closed_is_replaced_and_the_post_arrives_once() -> None:
    async with RawReceiver() as rx:
        client = HookClient(LOOPBACK)
        assert (await client.post(rx.url, b"{}", H, 5)).status_code == 200
        rx.drop_connections()  # the receiver's idle timeout closes the kept-alive connection
        assert (await client.post(rx.url, b'{"second":1}', H, 5)).status_code == 200
        await client.aclose()
    assert rx.connections == 2
    assert [body for _, _, body in rx.requests] == [b"{}", b'{"second":1}']


@pytest.mark.parametrize(("answer", "reused"), [
    (b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n", True),
    (b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 204 No Content\r\n\r\n", True),
    (b"HTTP/1.1 200 OK\r\nconnection: close\r\ncontent-length: 0\r\n\r\n", False),
    (b"HTTP/1.0 200 OK\r\ncontent-length: 0\r\n\r\n", False),
])
async def test_answers_of_every_framing_are_read_and_the_connection_reused_only_when_it_may_be(
        answer: bytes, reused: bool) -> None:
    async with RawReceiver(default=answer) as rx:
        client = HookClient(LOOPBACK)
        for _ in range(3):
            assert (await client.post(rx.url, b"{}", H, 5)).status_code in (200, 204)
        await client.aclose()
    assert rx.connections == (1 if reused else 3)


async def test_an_answer_without_length_runs_to_the_close_and_the_next_post_uses_a_new_connection() -> None:
    async with RawReceiver(default=b"HTTP/1.1 503 Busy\r\nretry-after: 7\r\n\r\nbody until close") as rx:
        client = HookClient(LOOPBACK)
        first = await client.post(rx.url, b"{}", H, 5)
        second = await client.post(rx.url, b"{}", H, 5)
        await client.aclose()
    assert (first.status_code, first.retry_after) == (second.status_code, second.retry_after) == (503, "7")
    assert rx.connections == 2


async def test_no_answer_within_the_timeout_is_a_read_timeout_and_a_refused_port_a_connect_error() -> None:
    async with RawReceiver() as rx:
        rx.script = [HOLD]
        client = HookClient(LOOPBACK)
        with pytest.raises(httpx.ReadTimeout):
            await client.post(rx.url, b"{}", H, 0.2)
        assert (await client.post(rx.url, b"{}", H, 5)).status_code == 200  # a fresh connection
        url = rx.url
    with pytest.raises(httpx.ConnectError):
        await client.post(url, b"{}", H, 1)  # the receiver is gone
    await client.aclose()


async def test_a_receiver_that_hangs_up_without_answering_is_a_protocol_error_not_a_success() -> None:
    async with RawReceiver() as rx:
        rx.script = [None]
        client = HookClient(LOOPBACK)
        with pytest.raises(httpx.RemoteProtocolError):
            await client.post(rx.url, b"{}", H, 5)
        await client.aclose()


async def test_credentials_in_the_url_go_as_basic_authorization() -> None:
    async with RawReceiver() as rx:
        client = HookClient(LOOPBACK)
        url = rx.url.replace("http://", "http://hook%20user:p%40ss@")
        await client.post(url + "?a=1", b"{}", {**H, "authorization": "Bearer other"}, 5)
        await client.aclose()
    head = rx.requests[0][1].decode()
    assert head.startswith("POST /hook?a=1 HTTP/1.1")
    assert f"authorization: Basic {base64.b64encode(b'hook user:p@ss').decode()}" in head
    assert "Bearer" not in head


async def test_a_header_value_with_a_line_break_is_refused_before_anything_is_sent() -> None:
    async with RawReceiver() as rx:
        client = HookClient(LOOPBACK)
        with pytest.raises(httpx.LocalProtocolError):
            await client.post(rx.url, b"{}", {"x-bad": "a\r\nx-injected: 1"}, 5)
        await client.aclose()
    assert rx.requests == []


async def test_a_name_rebound_to_metadata_is_never_dialled_and_each_connection_resolves_again(
        monkeypatch: pytest.MonkeyPatch) -> None:
    table = {"rebind.test": ["127.0.0.1"]}
    calls: list[str] = []

    async def resolve(host: str, port: int) -> list[str]:
        calls.append(host)
        return table[host]

    dialled: list[Any] = []
    async with RawReceiver(default=b"HTTP/1.1 200 OK\r\nconnection: close\r\ncontent-length: 0\r\n\r\n") as rx:
        port = rx.url.split(":")[2].split("/")[0]
        client = HookClient(LOOPBACK, resolve)
        assert (await client.post(f"http://rebind.test:{port}/hook", b"{}", H, 5)).status_code == 200
        table["rebind.test"] = ["169.254.169.254"]
        loop = asyncio.get_running_loop()
        real = loop.create_connection

        async def spy(*args: Any, **kwargs: Any) -> Any:
            dialled.append(args[1:3])
            return await real(*args, **kwargs)

        monkeypatch.setattr(loop, "create_connection", spy)
        with pytest.raises(httpx.ConnectError, match="refused by the webhook address policy"):
            await client.post(f"http://rebind.test:{port}/hook", b"{}", H, 5)
        with pytest.raises(httpx.ConnectError, match="never allowed"):
            await client.post("http://169.254.169.254/latest/meta-data/", b"{}", H, 5)
        await client.aclose()
    assert dialled == []
    assert calls == ["rebind.test", "rebind.test"]  # judged again at connect time, not from a cache
    assert len(rx.requests) == 1


async def test_an_https_receiver_with_an_untrusted_certificate_gets_no_request(tmp_path: Any) -> None:
    """TLS is verified (the CA bundle httpx used before): a self-signed receiver is a connect error."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")])
    now = datetime.datetime.now(datetime.UTC)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
            .serial_number(1).not_valid_before(now - datetime.timedelta(days=1))
            .not_valid_after(now + datetime.timedelta(days=1))
            .add_extension(x509.SubjectAlternativeName([x509.DNSName("localhost")]), critical=False)
            .sign(key, hashes.SHA256()))
    (tmp_path / "cert.pem").write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    (tmp_path / "key.pem").write_bytes(key.private_bytes(serialization.Encoding.PEM,
                                                         serialization.PrivateFormat.PKCS8,
                                                         serialization.NoEncryption()))
    server_tls = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    server_tls.load_cert_chain(tmp_path / "cert.pem", tmp_path / "key.pem")
    requests: list[bytes] = []

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            requests.append(await reader.readuntil(b"\r\n\r\n"))
        except (asyncio.IncompleteReadError, ConnectionError, ssl.SSLError):
            pass
        writer.close()

    server = await asyncio.start_server(handle, "127.0.0.1", 0, ssl=server_tls)
    port = server.sockets[0].getsockname()[1]
    client = HookClient(LOOPBACK)
    try:
        with pytest.raises(httpx.ConnectError, match="CERTIFICATE_VERIFY_FAILED"):
            await client.post(f"https://localhost:{port}/hook", b"{}", H, 5)
    finally:
        await client.aclose()
        server.close()
        await server.wait_closed()
    assert requests == []
