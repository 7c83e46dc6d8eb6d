"""Who the client is, network-wise: `X-Forwarded-For` counts only when a trusted proxy sent it.

The direct peer is the client unless it is in `TRUSTED_PROXIES` (addresses or CIDR ranges, `*` for
any). From a trusted peer, the forwarded chain is read right to left, skipping trusted hops: the
first untrusted address is the client (the rightmost-untrusted rule; the left part of the header is
whatever the client chose to send and is never believed). A malformed hop stops the walk at the
peer. `vonix serve` also has uvicorn apply the same list; this helper makes the rule explicit for
the limiter and holds in any server.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable

from starlette.types import Scope

Network = ipaddress.IPv4Network | ipaddress.IPv6Network


class TrustedProxies:
    def __init__(self, entries: Iterable[str]) -> None:
        self.any = False
        self.networks: list[Network] = []
        for entry in entries:
            entry = entry.strip()
            if entry == "*":
                self.any = True
            elif entry:
                self.networks.append(ipaddress.ip_network(entry, strict=False))

    def trusts(self, address: str) -> bool:
        if self.any:
            return True
        parsed = _parse(address)
        return parsed is not None and any(parsed in network for network in self.networks)


def _parse(address: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    try:
        return ipaddress.ip_address(address.strip().strip("[]"))
    except ValueError:
        return None


def _forwarded_for(scope: Scope) -> list[str]:
    hops: list[str] = []
    for name, value in scope.get("headers", ()):
        if name == b"x-forwarded-for":
            hops.extend(h.strip() for h in value.decode("latin-1").split(",") if h.strip())
    return hops


def client_ip(scope: Scope, trusted: TrustedProxies) -> str:
    peer = (scope.get("client") or ("", 0))[0] or "unknown"
    if not trusted.trusts(peer):
        return peer
    hops = _forwarded_for(scope)
    for hop in reversed(hops):
        parsed = _parse(hop)
        if parsed is None:
            return peer
        if not trusted.trusts(hop):
            return str(parsed)
    parsed_first = _parse(hops[0]) if hops else None
    return str(parsed_first) if parsed_first is not None else peer
