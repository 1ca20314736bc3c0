"""Who the client really is behind a reverse proxy: forwarding headers believed from trusted proxies only.

``STOKER_TRUSTED_PROXIES`` names the addresses (or CIDR networks) of the proxies in front of the
gateway. From a trusted peer, ``Forwarded`` (RFC 7239) or ``X-Forwarded-For``/``-Proto``/``-Host``
give the client's address, the scheme and the host the browser used; the chain is walked from the
right and stops at the first address that is not a trusted proxy (anything left of it is the
client's to forge). From any other peer these headers are ignored, and a loopback peer that sends
them is treated as a proxy nobody configured: it gets no "this machine" privileges.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Awaitable, Callable, Iterable, Mapping
from dataclasses import dataclass

from aiohttp import web
from aiohttp.typedefs import Middleware

Network = ipaddress.IPv4Network | ipaddress.IPv6Network
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
FORWARDING_HEADERS = ("Forwarded", "X-Forwarded-For", "X-Forwarded-Proto", "X-Forwarded-Host")
HOST = re.compile(r"^[A-Za-z0-9.\-]{1,253}(:\d{1,5})?$|^\[[0-9A-Fa-f:.]{2,45}\](:\d{1,5})?$")
MAX_HOPS = 20


@dataclass(frozen=True, slots=True)
class ClientView:
    """The client as the gateway believes it: address, scheme and host (None: the connection's own)."""

    ip: str
    scheme: str | None = None
    host: str | None = None
    untrusted_forwarding: bool = False  # forwarding headers came from a peer that is not a trusted proxy


def parse_networks(raw: str) -> tuple[Network, ...]:
    """``"10.0.0.1, 192.168.0.0/16, ::1"`` -> networks; ValueError naming the bad entry."""
    out = []
    for part in raw.split(","):
        part = part.strip()
        if not part:
            continue
        try:
            out.append(ipaddress.ip_network(part, strict=False))
        except ValueError:
            raise ValueError(f"STOKER_TRUSTED_PROXIES: {part!r} is not an address or CIDR network") from None
    return tuple(out)


def _ip(value: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    value = value.strip().strip('"')
    if value.startswith("["):  # "[2001:db8::1]:4711"
        value = value[1:].partition("]")[0]
    elif value.count(":") == 1:  # "192.0.2.1:4711"
        value = value.partition(":")[0]
    try:
        ip = ipaddress.ip_address(value.split("%", 1)[0])
    except ValueError:
        return None
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        return ip.ipv4_mapped
    return ip


def is_trusted(address: str, trusted: Iterable[Network]) -> bool:
    """Whether ``address`` is one of the trusted proxies."""
    ip = _ip(address)
    return ip is not None and any(ip in net for net in trusted)


def _values(headers: Mapping[str, str], name: str) -> list[str]:
    """Every comma-separated value of a header, across repeated header lines."""
    getall = getattr(headers, "getall", None)
    lines = getall(name, []) if getall is not None else [headers.get(name, "")]
    return [v.strip() for v in ",".join(lines).split(",") if v.strip()]


def _last(headers: Mapping[str, str], name: str) -> str | None:
    values = _values(headers, name)
    return values[-1] if values else None


def _hops(headers: Mapping[str, str], forwarded: Iterable[Mapping[str, str]]) -> list[dict[str, str | None]]:
    """The forwarding records, oldest first: RFC 7239 when present, else the X-Forwarded-* family."""
    elements = [dict(e) for e in forwarded]
    if elements:
        return [{"for": e.get("for"), "proto": e.get("proto"), "host": e.get("host")} for e in elements[-MAX_HOPS:]]
    chain = _values(headers, "X-Forwarded-For")[-MAX_HOPS:]
    if not chain:
        return []
    hops: list[dict[str, str | None]] = [{"for": a, "proto": None, "host": None} for a in chain]
    hops[-1]["proto"] = _last(headers, "X-Forwarded-Proto")  # set by the nearest proxy
    hops[-1]["host"] = _last(headers, "X-Forwarded-Host")
    return hops


def client_view(peer: str, headers: Mapping[str, str], forwarded: Iterable[Mapping[str, str]],
                trusted: tuple[Network, ...]) -> ClientView:
    """The client behind ``peer`` (pure: the peer's address, the request's headers, its parsed Forwarded)."""
    sent = any(name in headers for name in FORWARDING_HEADERS)
    if not sent:
        return ClientView(peer)
    if not is_trusted(peer, trusted):
        return ClientView(peer, untrusted_forwarding=True)
    client, scheme, host = peer, None, None
    for hop in reversed(_hops(headers, forwarded)):
        proto, fwd_host = (hop.get("proto") or "").lower(), hop.get("host") or ""
        if proto in ("http", "https"):
            scheme = proto
        if fwd_host and HOST.match(fwd_host):
            host = fwd_host
        ip = _ip(hop.get("for") or "")
        if ip is None:
            break  # "unknown" or an obfuscated name: the client stays the proxy that said so
        client = str(ip)
        if not any(ip in net for net in trusted):
            break
    return ClientView(client, scheme, host)


CLIENT = web.RequestKey("client", ClientView)


def proxy_middleware(trusted: tuple[Network, ...]) -> Middleware:
    """Put the believed client on the request (``request[CLIENT]``) and, via trusted proxies, its scheme,
    host and address on a clone, so ``request.secure``, ``request.host`` and ``request.remote`` are the
    browser's."""

    @web.middleware
    async def middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
        transport = request.transport
        peername = transport.get_extra_info("peername") if transport is not None else None
        peer = str(peername[0]) if isinstance(peername, tuple) and peername else (request.remote or "unknown")
        view = client_view(peer, request.headers, request.forwarded if trusted else (), trusted)
        changes: dict[str, str] = {}
        if view.ip != peer:
            changes["remote"] = view.ip
        if view.scheme is not None and view.scheme != request.scheme:
            changes["scheme"] = view.scheme
        if view.host is not None and view.host != request.host:
            changes["host"] = view.host
        if changes:
            request = request.clone(**changes)
        request[CLIENT] = view
        return await handler(request)

    return middleware
