"""Who is really on the other end of a request, when the service sits behind a proxy.

Behind a load balancer every request comes from the balancer's address, so anything keyed on the
client's address (the console's login throttle, the audit log) would treat all agents as one:
ten wrong tokens from one agent would lock every agent out. `X-Forwarded-For` says who the
client was, but anyone can send that header, so it is believed only when the request came from
a proxy named in `TRUSTED_PROXIES`, and then read from the right, skipping trusted hops, so a
client cannot choose its own address by prepending one.

aiohttp-remotes was considered: its `XForwardedFiltered` believes the header without checking
that the peer itself is a trusted proxy, and `XForwardedStrict` needs the exact chain of hops;
this is the dozen lines between the two, and it changes nothing else about the request.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Sequence

from aiohttp import hdrs, web

Network = ipaddress.IPv4Network | ipaddress.IPv6Network


def parse_networks(text: str) -> tuple[Network, ...]:
    """`TRUSTED_PROXIES`: addresses or CIDR networks separated by commas; ValueError if bad."""
    return tuple(
        ipaddress.ip_network(item.strip(), strict=False) for item in text.split(",") if item.strip()
    )


def _trusted(address: str, proxies: Sequence[Network]) -> bool:
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        return False
    return any(ip in network for network in proxies)


def client_address(request: web.Request, proxies: Sequence[Network]) -> str:
    """The client's address: the peer's, or, when the peer is a trusted proxy, the right-most
    address in `X-Forwarded-For` that is not itself a trusted proxy."""
    peer = request.remote or "unknown"
    if not proxies or not _trusted(peer, proxies):
        return peer
    hops = [
        hop.strip()
        for header in request.headers.getall(hdrs.X_FORWARDED_FOR, [])
        for hop in header.split(",")
        if hop.strip()
    ]
    for hop in reversed(hops):
        if not _trusted(hop, proxies):
            return hop
    return hops[0] if hops else peer


def came_over_tls(request: web.Request, proxies: Sequence[Network]) -> bool:
    """Whether the client reached us over TLS: directly, or through a trusted proxy that says
    so in `X-Forwarded-Proto` (its last value: the one the proxy next to us set).

    Only a proxy named in `TRUSTED_PROXIES` is believed, as for `X-Forwarded-For`; from anyone
    else the header is ignored."""
    if request.secure:
        return True
    peer = request.remote or ""
    if not proxies or not _trusted(peer, proxies):
        return False
    values = [
        value.strip().lower()
        for header in request.headers.getall(hdrs.X_FORWARDED_PROTO, [])
        for value in header.split(",")
        if value.strip()
    ]
    return bool(values) and values[-1] == "https"
