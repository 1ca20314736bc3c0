"""Trusted proxies (pure): which forwarding headers are believed, and what they say about the client."""

from __future__ import annotations

import pytest
from multidict import CIMultiDict

from services.gateway.config import ConfigError, GatewayConfig
from services.gateway.proxy import ClientView, client_view, parse_networks

BASE = {"NATS_URL": "nats://n", "DATABASE_URL": "postgresql://d",
        "STOKER_ADMIN_KEY": "k3y-with-enough-entropy-7f2c9a1e5b"}
TRUSTED = parse_networks("127.0.0.1, 10.0.0.0/8, ::1")


def view(peer: str, trusted=TRUSTED, forwarded=(), **headers: str) -> ClientView:
    h = CIMultiDict({k.replace("_", "-"): v for k, v in headers.items()})
    return client_view(peer, h, forwarded, trusted)


def test_without_forwarding_headers_the_peer_is_the_client() -> None:
    assert view("198.51.100.7") == ClientView("198.51.100.7")
    assert view("127.0.0.1") == ClientView("127.0.0.1")


def test_headers_from_an_untrusted_peer_are_ignored_and_flagged() -> None:
    got = view("198.51.100.7", X_Forwarded_For="127.0.0.1", X_Forwarded_Proto="https")
    assert got == ClientView("198.51.100.7", untrusted_forwarding=True)
    # a proxy on this machine that nobody configured: loopback, but it forwards for someone else
    got = view("127.0.0.1", trusted=(), X_Forwarded_For="203.0.113.9")
    assert got.ip == "127.0.0.1" and got.untrusted_forwarding


def test_a_trusted_proxy_names_the_client_scheme_and_host() -> None:
    got = view("127.0.0.1", X_Forwarded_For="203.0.113.9", X_Forwarded_Proto="https", X_Forwarded_Host="stoker.example")
    assert got == ClientView("203.0.113.9", "https", "stoker.example")


def test_the_chain_is_walked_from_the_right_through_trusted_proxies_only() -> None:
    # the client forged "127.0.0.1"; 203.0.113.9 is who connected to our first proxy (10.1.2.3)
    got = view("127.0.0.1", X_Forwarded_For="127.0.0.1, 203.0.113.9, 10.1.2.3")
    assert got.ip == "203.0.113.9"
    got = view("127.0.0.1", X_Forwarded_For="10.9.9.9, 10.1.2.3")  # all trusted: the leftmost
    assert got.ip == "10.9.9.9"


def test_rfc7239_forwarded() -> None:
    elements = [{"for": "198.51.100.1", "proto": "https", "host": "a.example"}, {"for": "[2001:db8::5]:4711"}]
    got = view("::1", forwarded=elements, Forwarded="for=198.51.100.1;proto=https;host=a.example, for=...")
    assert got.ip == "2001:db8::5"
    got = view("::1", forwarded=[{"for": "unknown", "proto": "https"}], Forwarded="for=unknown;proto=https")
    assert got == ClientView("::1", "https", None)


def test_nonsense_values_are_not_believed() -> None:
    got = view("127.0.0.1", X_Forwarded_For="not-an-ip", X_Forwarded_Proto="gopher", X_Forwarded_Host="a b/c")
    assert got == ClientView("127.0.0.1", None, None)


def test_the_setting_is_parsed_and_checked() -> None:
    config = GatewayConfig.from_mapping({**BASE, "STOKER_TRUSTED_PROXIES": "127.0.0.1, 172.16.0.0/12"})
    assert [str(n) for n in config.trusted_proxies] == ["127.0.0.1/32", "172.16.0.0/12"]
    assert GatewayConfig.from_mapping(BASE).trusted_proxies == ()
    with pytest.raises(ConfigError, match="nginx"):
        GatewayConfig.from_mapping({**BASE, "STOKER_TRUSTED_PROXIES": "nginx"})
