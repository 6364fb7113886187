"""`client_address`: X-Forwarded-For is believed only from trusted proxies, read from the right."""

from __future__ import annotations

import pytest
from aiohttp.test_utils import make_mocked_request

from bot.clientaddress import came_over_tls, client_address, parse_networks

PROXIES = parse_networks("10.0.0.0/8, 192.168.1.5")


def request_from(peer: str, *forwarded: str) -> object:
    headers = [("X-Forwarded-For", value) for value in forwarded]
    request = make_mocked_request("POST", "/console/login", headers=headers)
    request._transport_peername = (peer, 40000)  # type: ignore[attr-defined]
    return request


@pytest.mark.parametrize(
    ("peer", "forwarded", "expected"),
    [
        ("203.0.113.7", (), "203.0.113.7"),
        # Not from a proxy: the header is the client's own claim, ignored.
        ("203.0.113.7", ("198.51.100.1",), "203.0.113.7"),
        ("10.1.2.3", ("198.51.100.1",), "198.51.100.1"),
        # A client prepending a fake address does not choose its own: read from the right.
        ("10.1.2.3", ("1.2.3.4, 198.51.100.1",), "198.51.100.1"),
        # Two trusted hops, then the client; several headers count as one list.
        ("10.1.2.3", ("198.51.100.1, 192.168.1.5", "10.9.9.9"), "198.51.100.1"),
        # Only trusted hops: the left-most one.
        ("10.1.2.3", ("10.0.0.1, 10.0.0.2",), "10.0.0.1"),
        ("10.1.2.3", (), "10.1.2.3"),
        ("10.1.2.3", ("2001:db8::1",), "2001:db8::1"),
    ],
)
def test_the_client_behind_trusted_proxies(
    peer: str, forwarded: tuple[str, ...], expected: str
) -> None:
    assert client_address(request_from(peer, *forwarded), PROXIES) == expected  # type: ignore[arg-type]


def test_without_trusted_proxies_the_peer_is_the_client() -> None:
    assert client_address(request_from("10.1.2.3", "198.51.100.1"), ()) == "10.1.2.3"  # type: ignore[arg-type]


def test_bad_networks_are_refused() -> None:
    with pytest.raises(ValueError):
        parse_networks("10.0.0.0/8, not-an-address")


def proto_request(peer: str, *protos: str, tls: bool = False) -> object:
    headers = [("X-Forwarded-Proto", value) for value in protos]
    request = make_mocked_request("POST", "/console/login", headers=headers)
    request._transport_peername = (peer, 40000)  # type: ignore[attr-defined]
    if tls:
        request._transport_sslcontext = object()  # type: ignore[attr-defined]
    return request


@pytest.mark.parametrize(
    ("peer", "protos", "tls", "expected"),
    [
        ("203.0.113.7", (), False, False),
        ("203.0.113.7", (), True, True),
        # Anyone may send the header: believed only from a trusted proxy.
        ("203.0.113.7", ("https",), False, False),
        ("10.1.2.3", ("https",), False, True),
        ("10.1.2.3", ("HTTPS",), False, True),
        ("10.1.2.3", ("http",), False, False),
        ("10.1.2.3", (), False, False),
        # The value set by the proxy next to us is the last one.
        ("10.1.2.3", ("http, https",), False, True),
        ("10.1.2.3", ("https", "http"), False, False),
    ],
)
def test_tls_is_believed_from_the_connection_or_a_trusted_proxy(
    peer: str, protos: tuple[str, ...], tls: bool, expected: bool
) -> None:
    request = proto_request(peer, *protos, tls=tls)
    assert came_over_tls(request, PROXIES) is expected  # type: ignore[arg-type]
    assert came_over_tls(request, ()) is tls  # type: ignore[arg-type]
