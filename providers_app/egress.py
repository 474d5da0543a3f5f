"""Egress policy: may the server contact a URL a client gave it, and at which checked address.

A client can make the server open connections (an MCP ``server_url``); without a policy that is
a way into the server's own network. The rules:

* only ``http`` and ``https``, no user info in the URL;
* the host is resolved once; every address it resolves to must be public (not loopback,
  private, link-local, CGNAT, multicast, unspecified, reserved, documentation or a cloud
  metadata address; IPv4-mapped, 6to4 and NAT64 IPv6 addresses are judged by the IPv4 inside);
* unless the URL matches an operator's allow-list pattern, which lifts the address rule;
* the connection then goes to the checked address (:attr:`Destination.address`), never to a
  second resolution of the name, so a DNS answer that changes cannot move it (rebinding);
  the name is still used for ``Host`` and TLS (SNI and certificate checks).

Allow-list patterns look like URLs with shell-style globs per part, matched part by part so a
host glob never spills into the port or path: ``http://127.0.0.1:*``,
``https://*.mcp.example.com``, ``https://tools.example.com:8443/mcp/*``. A pattern without a
port matches the scheme's default port only; without a path, any path.
"""

from __future__ import annotations

import asyncio
import fnmatch
import ipaddress
import re
import socket
from collections.abc import Iterable
from dataclasses import dataclass
from urllib.parse import urlsplit

DEFAULT_PORTS = {"http": 80, "https": 443}

# Not caught by ``is_global``/``is_multicast`` but never a place a client may send the server.
_EXTRA_DENIED = [
    ipaddress.ip_network(n)
    for n in (
        "0.0.0.0/8",  # "this network"
        "100.64.0.0/10",  # CGNAT (Alibaba's metadata service lives here too)
        "192.0.0.0/24",  # IETF protocol assignments (Oracle Cloud metadata: 192.0.0.192)
        "168.63.129.16/32",  # Azure's wire server / metadata (a public address)
        "fd00:ec2::254/128",  # AWS metadata over IPv6
        "fec0::/10",  # deprecated site-local
    )
]
_NAT64 = ipaddress.ip_network("64:ff9b::/96")

_PATTERN = re.compile(
    r"^(?P<scheme>[a-z*]+)://(?P<host>\[[^\]]+\]|[^/:\[\]]+)(?::(?P<port>[0-9*?\[\]-]+))?(?P<path>/.*)?$",
    re.IGNORECASE,
)


class EgressDenied(Exception):
    """The URL may not be contacted (for the server's log; clients get one message for every cause)."""


@dataclass(frozen=True, slots=True)
class Destination:
    """A URL that passed the policy, with the address its connections must go to."""

    url: str
    scheme: str
    host: str  # lower-case, IPv6 without brackets
    port: int
    address: str  # the checked IP address to connect to


def address_is_public(address: str | ipaddress.IPv4Address | ipaddress.IPv6Address) -> bool:
    """True for an address a client may make the server contact without an allow-list entry."""
    ip = ipaddress.ip_address(address)
    if isinstance(ip, ipaddress.IPv6Address):
        embedded = ip.ipv4_mapped or ip.sixtofour
        if embedded is None and ip in _NAT64:
            embedded = ipaddress.IPv4Address(int(ip) & 0xFFFFFFFF)
        if embedded is not None:
            return address_is_public(embedded)
        if ip.teredo:
            return False
    if ip.is_multicast or ip.is_unspecified or ip.is_loopback or ip.is_link_local:
        return False
    if any(ip in network for network in _EXTRA_DENIED if network.version == ip.version):
        return False
    return ip.is_global


def _split(url: str) -> tuple[str, str, int, str]:
    """``(scheme, host, port, path)`` of an http(s) URL; :class:`EgressDenied` for anything else."""
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError as exc:
        raise EgressDenied(f"malformed URL: {exc}") from None
    scheme = parts.scheme.lower()
    if scheme not in DEFAULT_PORTS:
        raise EgressDenied(f"scheme {scheme!r} is not http or https")
    if parts.username is not None or parts.password is not None:
        raise EgressDenied("user info in the URL")
    host = (parts.hostname or "").lower()
    if not host:
        raise EgressDenied("no host")
    if not host.isascii():
        try:  # the form HTTP clients put on the wire (and pinning compares with)
            host = host.encode("idna").decode("ascii")
        except UnicodeError:
            raise EgressDenied("host is not a valid name") from None
    return scheme, host, port or DEFAULT_PORTS[scheme], parts.path or "/"


def url_matches(url: str, patterns: Iterable[str]) -> bool:
    """True when ``url`` matches one of the operator's allow-list ``patterns``."""
    try:
        scheme, host, port, path = _split(url)
    except EgressDenied:
        return False
    for pattern in patterns:
        match = _PATTERN.match(pattern.strip())
        if match is None:
            continue
        p_scheme = match["scheme"].lower()
        p_host = match["host"].lower().strip("[]")
        if not fnmatch.fnmatchcase(scheme, p_scheme) or not fnmatch.fnmatchcase(host, p_host):
            continue
        if match["port"] is None:
            if port != DEFAULT_PORTS.get(scheme):
                continue
        elif not fnmatch.fnmatchcase(str(port), match["port"]):
            continue
        if match["path"] is not None and not fnmatch.fnmatchcase(path, match["path"]):
            continue
        return True
    return False


def allowed_patterns(value: str | Iterable[str] | None) -> list[str]:
    """A setting's patterns: a list, or a comma- or whitespace-separated string."""
    if not value:
        return []
    if isinstance(value, str):
        value = re.split(r"[,\s]+", value)
    return [p.strip() for p in value if p and p.strip()]


async def resolve(url: str, allow: Iterable[str] = ()) -> Destination:
    """Check ``url`` against the policy and resolve it once; :class:`EgressDenied` if refused.

    Every address the name resolves to must pass (a name that also points inside is refused
    as a whole), unless the URL matches ``allow``; the first address is the one to connect to.
    """
    scheme, host, port, _path = _split(url)
    trusted = url_matches(url, allow)
    try:
        literal = ipaddress.ip_address(host)
    except ValueError:
        literal = None
    if literal is not None:
        addresses = [str(literal)]
    else:
        try:
            infos = await asyncio.get_running_loop().getaddrinfo(
                host, port, type=socket.SOCK_STREAM, proto=socket.IPPROTO_TCP
            )
        except (OSError, UnicodeError) as exc:
            raise EgressDenied(f"cannot resolve {host!r}: {exc}") from None
        addresses = list(dict.fromkeys(str(info[4][0]).split("%")[0] for info in infos))
    if not addresses:
        raise EgressDenied(f"{host!r} resolves to no address")
    if not trusted:
        denied = [a for a in addresses if not address_is_public(a)]
        if denied:
            raise EgressDenied(f"{host!r} resolves to a non-public address ({denied[0]}) not allowed")
    return Destination(url, scheme, host, port, addresses[0])
