"""``mediaUrl`` fetched from a real loopback server through the address guard, with the size cap."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest

from wahub.domain import webhookurl
from wahub.domain.errors import InvalidInput
from wahub.runtime.media import MediaSource

pytestmark = pytest.mark.timeout(30)
JPEG = b"\xff\xd8\xff\xe0" + b"\x01" * 500


class Files(BaseHTTPRequestHandler):
    served: list[str] = []

    def do_GET(self) -> None:  # noqa: N802 - http.server naming
        Files.served.append(self.path)
        if self.path == "/photo.jpg":
            self._answer(200, JPEG, {"Content-Type": "image/jpeg", "Content-Length": str(len(JPEG))})
        elif self.path == "/endless":  # no length announced: the cap must cut the read
            self.send_response(200)
            self.send_header("Content-Type", "application/pdf")
            self.end_headers()
            try:
                for _ in range(1000):
                    self.wfile.write(b"%PDF" + b"\x00" * 1020)
            except (BrokenPipeError, ConnectionResetError):
                pass
        elif self.path == "/trickle":  # a length announced, then 10 bytes every 0.1 s: no read ever times out
            self.send_response(200)
            self.send_header("Content-Type", "image/jpeg")
            self.send_header("Content-Length", "100000")
            self.end_headers()
            try:
                for _ in range(10_000):
                    self.wfile.write(b"\x01" * 10)
                    self.wfile.flush()
                    time.sleep(0.1)
            except (BrokenPipeError, ConnectionResetError):
                pass
        elif self.path == "/to-photo":
            self._answer(302, b"", {"Location": "/photo.jpg", "Content-Length": "0"})
        elif self.path == "/to-metadata":
            self._answer(302, b"", {"Location": "http://169.254.169.254/latest/meta-data/", "Content-Length": "0"})
        else:
            self._answer(404, b"no", {"Content-Length": "2"})

    def _answer(self, status: int, body: bytes, headers: dict[str, str]) -> None:
        self.send_response(status)
        for k, v in headers.items():
            self.send_header(k, v)
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: Any) -> None:
        pass


@pytest.fixture
def server() -> Iterator[str]:
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Files)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{httpd.server_address[1]}"
    finally:
        httpd.shutdown()
        httpd.server_close()


def source(networks: str = "loopback", **kw: Any) -> MediaSource:
    async def resolver(host: str, port: int) -> list[str]:
        return {"files.internal": ["10.0.0.7"], "localhost": ["127.0.0.1"]}.get(host, ["127.0.0.1"])

    return MediaSource(webhookurl.parse_policy(networks), max_bytes=kw.pop("max_bytes", 64 * 1024),
                       mime_types=["image/*", "application/pdf"], timeout_ms=5_000, resolver=resolver, **kw)


async def test_a_loopback_file_is_fetched_and_typed(server: str) -> None:
    body = await source().resolve({"chatId": "x", "mediaUrl": server + "/to-photo"})
    assert body["mimetype"] == "image/jpeg" and body["mediaName"] == "photo.jpg"
    assert "mediaUrl" not in body and len(body["mediaBase64"]) > 600


async def test_a_file_without_a_length_is_cut_at_the_cap(server: str) -> None:
    with pytest.raises(InvalidInput, match="mediaUrl: the file is larger than MEDIA_MAX_BYTES=65536"):
        await source().resolve({"mediaUrl": server + "/endless"})


async def test_a_redirect_to_cloud_metadata_is_never_followed(server: str) -> None:
    with pytest.raises(InvalidInput, match="mediaUrl could not be fetched: refused by the webhook address policy"):
        await source().resolve({"mediaUrl": server + "/to-metadata"})


async def test_loopback_is_refused_when_the_policy_refuses_it_and_a_private_name_is_refused(server: str) -> None:
    Files.served.clear()
    with pytest.raises(InvalidInput, match="mediaUrl refused"):
        await source("none").resolve({"mediaUrl": server + "/photo.jpg"})
    with pytest.raises(InvalidInput, match="refused by the webhook address policy"):
        await source().resolve({"mediaUrl": "http://files.internal:8080/photo.jpg"})
    assert Files.served == []  # neither reached any server


async def test_a_slow_body_is_cut_at_the_fetch_deadline(server: str) -> None:
    with pytest.raises(InvalidInput, match="mediaUrl was not fetched within 1000 ms"):
        await MediaSource(webhookurl.parse_policy("loopback"), max_bytes=1_000_000, mime_types=["image/*"],
                          timeout_ms=1_000).resolve({"chatId": "x", "mediaUrl": server + "/trickle"})


@pytest.mark.parametrize("url", ["http://a..b/png", "http://xn--/png", "http://[v1.x]/png", "http://1.2.3.999/png",
                                 "http://0177.0.0.1:18092/png", "http://0251.0376.0251.0376/x.png",
                                 "http://" + "a" * 300 + ".example/x.png"])
async def test_a_host_no_client_can_dial_is_a_400_naming_the_field(url: str) -> None:
    with pytest.raises(InvalidInput, match="mediaUrl has an invalid host"):
        await source().resolve({"chatId": "x", "mediaUrl": url})
    with pytest.raises(InvalidInput, match="webhook.url has an invalid host"):
        webhookurl.parse(url)
