"""Does a user hold a live websocket on any replica? (Push only those who are not looking.)

This replica's hub answers for itself; across replicas the presence backend's per-user connection
records (the ones the connection cap counts) answer through `Presence.connection_count`.
When the answer cannot be had (Redis down) the user counts as offline: a duplicate alert beats
a missed one.
"""

from __future__ import annotations

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
