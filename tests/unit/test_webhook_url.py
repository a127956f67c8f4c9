"""Webhook URL rules: syntax, address classes (link-local and metadata never), credentials never shown."""

from __future__ import annotations

import ipaddress

import pytest

from wahub.domain import webhookurl
from wahub.domain.errors import InvalidInput
from wahub.domain.webhookurl import Policy, Reach

DEFAULT = webhookurl.parse_policy("loopback")


@pytest.mark.parametrize(("address", "reach"), [
    ("169.254.169.254", Reach.LINK_LOCAL), ("169.254.1.1", Reach.LINK_LOCAL), ("fe80::1", Reach.LINK_LOCAL),
    ("fd00:ec2::254", Reach.METADATA), ("100.100.100.200", Reach.METADATA),
    ("::ffff:169.254.169.254", Reach.LINK_LOCAL), ("64:ff9b::a9fe:a9fe", Reach.LINK_LOCAL),
    ("127.0.0.1", Reach.LOOPBACK), ("127.8.9.10", Reach.LOOPBACK), ("::1", Reach.LOOPBACK),
    ("::ffff:127.0.0.1", Reach.LOOPBACK),
    ("10.1.2.3", Reach.PRIVATE), ("172.16.0.1", Reach.PRIVATE), ("192.168.1.1", Reach.PRIVATE),
    ("100.64.0.1", Reach.PRIVATE), ("fd12:3456::1", Reach.PRIVATE),
    ("0.0.0.0", Reach.RESERVED), ("0.1.2.3", Reach.RESERVED), ("::", Reach.RESERVED), ("224.0.0.1", Reach.RESERVED),
    ("240.0.0.1", Reach.RESERVED),
    ("93.184.216.34", Reach.PUBLIC), ("2606:4700::1111", Reach.PUBLIC),
])
def test_addresses_are_classified(address: str, reach: Reach) -> None:
    assert webhookurl.classify(ipaddress.ip_address(address)) is reach


@pytest.mark.parametrize("address", ["169.254.169.254", "fd00:ec2::254", "fe80::1", "0.0.0.0",
                                     "::ffff:169.254.169.254"])
def test_link_local_and_metadata_are_refused_even_when_everything_is_opened(address: str) -> None:
    wide_open = webhookurl.parse_policy("loopback,private")
    assert wide_open.refusal(ipaddress.ip_address(address)) is not None


def test_default_policy_allows_loopback_only() -> None:
    assert DEFAULT == Policy(allow_loopback=True, allow_private=False)
    assert DEFAULT.refusal(ipaddress.ip_address("127.0.0.1")) is None
    assert DEFAULT.refusal(ipaddress.ip_address("10.0.0.5")) is not None
    assert webhookurl.parse_policy("none").refusal(ipaddress.ip_address("127.0.0.1")) is not None
    assert webhookurl.parse_policy("private").refusal(ipaddress.ip_address("192.168.0.9")) is None
    with pytest.raises(ValueError, match="WEBHOOK_ALLOWED_NETWORKS"):
        webhookurl.parse_policy("loopback,everything")


@pytest.mark.parametrize("url", ["http://", "http:///nohost", "https://", "ftp://host/x", "javascript:alert(1)",
                                 "http://host:99999/", "http://a b/", "http://host/\x00", "//host/path", 42,
                                 "http://" + "a" * 2000])
def test_malformed_urls_are_refused_naming_the_field(url: object) -> None:
    with pytest.raises(InvalidInput, match=r"webhook\.url"):
        webhookurl.parse(url)


def test_a_valid_url_keeps_its_form_and_names_host_and_port() -> None:
    t = webhookurl.parse("https://User:Pw@Hooks.Example.com./wa?x=1")
    assert (t.url, t.host, t.port) == ("https://User:Pw@Hooks.Example.com./wa?x=1", "hooks.example.com", 443)
    assert webhookurl.parse("http://[::1]:8080/h").host == "::1"


@pytest.mark.parametrize("host", ["169.254.169.254", "metadata.google.internal", "[fd00:ec2::254]", "10.0.0.1"])
def test_refused_by_its_written_form(host: str) -> None:
    assert webhookurl.refusal_by_name(webhookurl.parse(f"http://{host}/x").host, DEFAULT) is not None


def test_credentials_are_never_shown() -> None:
    assert webhookurl.redact("https://bob:s3cret@hooks.example.com:8443/wa?x=1") == \
        "https://***@hooks.example.com:8443/wa?x=1"
    assert webhookurl.redact("https://token@hooks.example.com/") == "https://***@hooks.example.com/"
    assert webhookurl.redact("https://hooks.example.com/a@b") == "https://hooks.example.com/a@b"
    assert webhookurl.redact(None) is None
