"""Does a user hold a live websocket on any replica? (Push only those who are not looking.)

This replica's hub answers for itself; across replicas the presence backend's per-user connection
records (the ones the connection cap counts) answer through `Presence.connection_count`.
When the answer cannot be had (Redis down) the user counts as offline: a duplicate alert beats
a missed one.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from server.observability.logging import get_logger

log = get_logger("vonix.notifications")


async def has_live_connection(node: Any, user_id: int) -> bool:
    if node.hub.by_user.get(user_id):
        return True
    presence = node.presence
    try:
        return bool(await presence.connection_count(user_id))
    except Exception as exc:
        log.warning("online_check_failed", user_id=user_id, error=exc.__class__.__name__)
    return False


async def live_users(node: Any, user_ids: Sequence[int]) -> set[int]:
    """`has_live_connection` for many users in one round trip; all count as offline if it fails."""
    here = {uid for uid in user_ids if node.hub.by_user.get(uid)}
    rest = [uid for uid in user_ids if uid not in here]
    if not rest:
        return here
    try:
        return here | await node.presence.connected_users(rest)
    except Exception as exc:
        log.warning("online_check_failed", users=len(rest), error=exc.__class__.__name__)
    return here
