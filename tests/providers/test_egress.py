"""The egress policy (issue 16, finding 2): which addresses a client may make the server contact."""

from __future__ import annotations

import asyncio
import socket

import pytest

from providers_app import egress
from providers_app.egress import EgressDenied, address_is_public, resolve, url_matches

DENIED = [
    "127.0.0.1",
    "127.8.9.10",
    "0.0.0.0",
    "10.1.2.3",
    "172.16.0.1",
    "192.168.1.1",
    "169.254.169.254",  # AWS, GCP, Azure IMDS
    "100.64.0.1",  # CGNAT
    "100.100.100.200",  # Alibaba metadata
    "192.0.0.192",  # Oracle metadata
    "168.63.129.16",  # Azure wire server
    "224.0.0.1",
    "239.255.255.250",
    "255.255.255.255",
    "198.18.0.1",
    "::",
    "::1",
    "fe80::1",
    "fc00::1",
    "fd00:ec2::254",
    "ff02::1",
    "ff0e::1",
    "::ffff:127.0.0.1",  # IPv4-mapped
    "::ffff:169.254.169.254",
    "::ffff:10.0.0.1",
    "64:ff9b::7f00:1",  # NAT64 of 127.0.0.1
    "2002:7f00:1::1",  # 6to4 of 127.0.0.1
    "2001:db8::1",
]
PUBLIC = ["8.8.8.8", "1.1.1.1", "2606:4700:4700::1111", "::ffff:8.8.8.8", "64:ff9b::808:808"]


@pytest.mark.parametrize("address", DENIED)
def test_internal_addresses_are_denied(address):
    assert not address_is_public(address)


@pytest.mark.parametrize("address", PUBLIC)
def test_public_addresses_pass(address):
    assert address_is_public(address)


@pytest.mark.parametrize(
    ("url", "patterns", "expected"),
    [
        ("http://127.0.0.1:8123/mcp", ["http://127.0.0.1:*"], True),
        ("http://127.0.0.1/mcp", ["http://127.0.0.1"], True),
        ("http://127.0.0.1:8123/mcp", ["http://127.0.0.1"], False),  # no port: the default only
        ("https://127.0.0.1:8123/mcp", ["http://127.0.0.1:*"], False),
        ("https://a.tools.internal/mcp", ["https://*.tools.internal"], True),
        # A host glob never spills over into the port, the user info or another domain.
        ("https://a.tools.internal.evil.example/mcp", ["https://*.tools.internal"], False),
        ("https://tools.internal@evil.example/", ["https://tools.internal*"], False),
        ("https://tools.internal.evil.example/", ["https://tools.internal:*"], False),
        ("https://tools.example.com:8443/mcp/x", ["https://tools.example.com:8443/mcp/*"], True),
        ("https://tools.example.com:8443/other", ["https://tools.example.com:8443/mcp/*"], False),
        ("http://[::1]:9000/mcp", ["http://[::1]:*"], True),
        ("http://127.0.0.1:8123/mcp", [], False),
    ],
)
def test_allow_list_patterns_match_part_by_part(url, patterns, expected):
    assert url_matches(url, patterns) is expected


def test_setting_values_are_lists_or_separated_strings():
    assert egress.allowed_patterns("http://a:*, https://b  http://c") == [
        "http://a:*",
        "https://b",
        "http://c",
    ]
    assert egress.allowed_patterns(None) == [] and egress.allowed_patterns(["x", " "]) == ["x"]


def _fake_dns(monkeypatch, answers: dict[str, list[str]]) -> list[str]:
    asked: list[str] = []

    async def getaddrinfo(self, host, port, **kwargs):
        asked.append(host)
        if host not in answers:
            raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")
        return [
            (socket.AF_INET6 if ":" in a else socket.AF_INET, socket.SOCK_STREAM, 6, "", (a, port))
            for a in answers[host]
        ]

    monkeypatch.setattr(asyncio.BaseEventLoop, "getaddrinfo", getaddrinfo)
    return asked


def test_a_name_is_resolved_once_and_the_checked_address_kept(monkeypatch):
    asked = _fake_dns(monkeypatch, {"mcp.example.com": ["93.184.216.34"]})
    destination = asyncio.run(resolve("https://MCP.example.com/mcp"))
    assert (destination.host, destination.port, destination.address) == (
        "mcp.example.com",
        443,
        "93.184.216.34",
    )
    assert asked == ["mcp.example.com"]


@pytest.mark.parametrize(
    "url",
    [
        "http://127.0.0.1:8000/v1/responses",  # the server itself
        "http://2130706433/",  # 127.0.0.1 in decimal: judged by what it resolves to
        "http://[::ffff:7f00:1]/",
        "http://169.254.169.254/latest/meta-data/",
        "http://metadata.google.internal/",  # resolves inside
        "http://inside-and-out.example.com/",  # one internal answer is enough to refuse
        "http://nowhere.invalid/",
        "file:///etc/passwd",
        "gopher://example.com/",
        "http://user:pass@93.184.216.34/",
    ],
)
def test_denied_urls(monkeypatch, url):
    _fake_dns(
        monkeypatch,
        {
            "2130706433": ["127.0.0.1"],
            "metadata.google.internal": ["169.254.169.254"],
            "inside-and-out.example.com": ["93.184.216.34", "10.0.0.5"],
        },
    )
    with pytest.raises(EgressDenied):
        asyncio.run(resolve(url))


def test_the_allow_list_lifts_the_address_rule_only_for_its_urls(monkeypatch):
    _fake_dns(monkeypatch, {"tools.internal": ["10.0.0.7"]})
    allow = ["http://tools.internal:*", "http://127.0.0.1:*"]
    assert asyncio.run(resolve("http://tools.internal:8080/mcp", allow)).address == "10.0.0.7"
    assert asyncio.run(resolve("http://127.0.0.1:9/mcp", allow)).address == "127.0.0.1"
    with pytest.raises(EgressDenied):
        asyncio.run(resolve("http://169.254.169.254/", allow))
