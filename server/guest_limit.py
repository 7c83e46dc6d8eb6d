"""How many guest websockets one client address may hold on this replica (`WS_MAX_GUESTS_PER_IP`).

A guest (an upgrade with no credentials) that follows a `status:` channel is spared by the auth
timeout, so without a cap one client could open sockets until the replica runs out of file
descriptors. A guest holds a slot from the upgrade until it signs in with an `auth` frame (it is
then a member, under the per-user cap `WS_MAX_CONNECTIONS_PER_USER`) or disconnects. Members with
credentials on the upgrade never take one.

The count is per replica, in memory, on purpose: the load balancer spreads one client's sockets
over the replicas, so a flood meets the cap on each of them (at most replicas x cap in all), and
the exhaustion this guards against — descriptors and memory — is itself per replica. A cluster-wide
count would put a Redis round trip on every guest upgrade and a leak to sweep when a replica dies,
for no protection a replica's own count does not give.

The address is the rate limiter's (`client_ip`: `X-Forwarded-For` only from `TRUSTED_PROXIES`),
so a client cannot move to a fresh slot by forging the header. IPv6 addresses count by /64: one
host is usually given a whole /64 and could otherwise take a new address for every socket.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Sequence
from typing import Any

from starlette.types import Scope

from server.ratelimit.client_ip import TrustedProxies, client_ip

IPV6_PREFIX = 64


def address_key(ip: str) -> str:
    """The bucket an address counts in: itself for IPv4 (and anything unparsable), its /64 for IPv6."""
    try:
        parsed = ipaddress.ip_address(ip)
    except ValueError:
        return ip
    if isinstance(parsed, ipaddress.IPv6Address):
        if parsed.ipv4_mapped is not None:
            return str(parsed.ipv4_mapped)
        return str(ipaddress.IPv6Network((parsed, IPV6_PREFIX), strict=False))
    return str(parsed)


class GuestSlot:
    """One guest's place in its address's count; `release` is idempotent (sign-in, then close)."""

    __slots__ = ("_key", "_limit")

    def __init__(self, limit: GuestLimit, key: str) -> None:
        self._limit: GuestLimit | None = limit
        self._key = key

    def release(self) -> None:
        if self._limit is not None:
            self._limit._release(self._key)
            self._limit = None


class GuestLimit:
    """Guest sockets per address on this replica; `admit` and `release` are synchronous, so two
    upgrades arriving together cannot both take the last slot."""

    def __init__(self, cap: int, trusted_proxies: Sequence[str], metrics: Any = None) -> None:
        self.cap = cap
        self._trusted = TrustedProxies(trusted_proxies)
        self._held: dict[str, int] = {}
        self.total = 0
        self._refused: Any = None
        if metrics is not None:
            # `reason` is one of two words: "limit" (over the cap) or "disabled" (the cap is 0).
            self._refused = metrics.counter("vonix_ws_guests_refused_total",
                                            "Guest websockets refused: over WS_MAX_GUESTS_PER_IP from one "
                                            "address on this replica, or guests disabled.", ("reason",))
            for reason in ("limit", "disabled"):
                self._refused.labels(reason)
            guests = metrics.gauge("vonix_ws_guest_connections",
                                   "Guest (not signed-in) websockets open on this replica.")
            guests.set_function(lambda: self.total)

    def held(self, ip: str) -> int:
        """Guest sockets counted for the address `ip` (its /64 for IPv6)."""
        return self._held.get(address_key(ip), 0)

    def admit(self, scope: Scope) -> GuestSlot | None:
        """A slot for the guest upgrading in `scope`, or None when its address is at the cap."""
        if self.cap <= 0:
            self._refuse("disabled")
            return None
        key = address_key(client_ip(scope, self._trusted))
        held = self._held.get(key, 0)
        if held >= self.cap:
            self._refuse("limit")
            return None
        self._held[key] = held + 1
        self.total += 1
        return GuestSlot(self, key)

    def _refuse(self, reason: str) -> None:
        if self._refused is not None:
            self._refused.labels(reason).inc()

    def _release(self, key: str) -> None:
        held = self._held.get(key, 0) - 1
        if held > 0:
            self._held[key] = held
        else:
            self._held.pop(key, None)  # no entry per address ever seen: the dict holds only live ones
        self.total -= 1
