"""Who a request comes from: the address its rates are counted against.

The peer's address, unless ``REALTIME["FRONT_DOOR"]["TRUSTED_PROXY_HEADER"]`` is
set and the peer is one of ``TRUSTED_PROXIES``: then the header
(``X-Forwarded-For`` style, a comma-separated list) is read from the right,
past every trusted proxy, to the first address none of ours added. A client
can put anything at the left of that header; only what our own proxies
appended is believed. IPv6 clients count per /64 (one subscriber's prefix).
"""

from __future__ import annotations

import ipaddress
from collections.abc import Mapping, Sequence
from functools import lru_cache
from typing import Any

from realtime.conf import realtime_settings

Network = ipaddress.IPv4Network | ipaddress.IPv6Network


@lru_cache(maxsize=8)
def _networks(cidrs: tuple[str, ...]) -> tuple[Network, ...]:
    return tuple(ipaddress.ip_network(cidr, strict=False) for cidr in cidrs)


def _trusted(address: str, networks: Sequence[Network]) -> bool:
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        return False
    return any(ip in network for network in networks)


def client_address(scope: Mapping[str, Any]) -> str:
    """The client's address for rate limits (``""`` when the server gave none)."""
    return _per_subscriber(client_ip(scope))


def client_ip(scope: Mapping[str, Any]) -> str:
    """The client's own address (``""`` when the server gave none).

    What authorizers and handlers see as ``sourceIp`` and what the
    failed-authorization limiter counts: behind a trusted proxy, the proxy's
    address would make every client one.
    """
    client = scope.get("client")
    peer = str(client[0]) if client else ""
    header = realtime_settings.front_door_option("TRUSTED_PROXY_HEADER")
    if header and peer:
        networks = _networks(tuple(realtime_settings.front_door_option("TRUSTED_PROXIES")))
        if _trusted(peer, networks):
            name = str(header).lower().encode("latin-1")
            values = [value for key, value in scope.get("headers", ()) if key == name]
            hops = [hop.strip() for value in values for hop in value.decode("latin-1").split(",")]
            for hop in reversed(hops):
                if hop and not _trusted(hop, networks):
                    return str(hop)
    return peer


def _per_subscriber(address: str) -> str:
    if ":" not in address:
        return address
    try:
        return str(ipaddress.ip_network(f"{address}/64", strict=False).network_address)
    except ValueError:
        return address
