"""Roles and permissions: one table in code, checked by every guarded route.

Site roles (admin, moderator, member, bot) grant permissions; channel roles (owner, moderator,
member) are checked by the realtime permission layer per channel. A route declares the permission
it needs with `@requires("...")`; the test suite enumerates every route that declares an admin
permission and proves members get 403 and anonymous callers 401.
"""

from __future__ import annotations

from enum import StrEnum


class Role(StrEnum):
    ADMIN = "admin"
    MODERATOR = "moderator"
    MEMBER = "member"
    BOT = "bot"


class ChannelRole(StrEnum):
    OWNER = "owner"
    MODERATOR = "moderator"
    MEMBER = "member"


PERMISSIONS: dict[str, frozenset[Role]] = {
    # administration
    "admin.audit.read": frozenset({Role.ADMIN}),
    "admin.bots.manage": frozenset({Role.ADMIN}),
    "admin.db.read": frozenset({Role.ADMIN}),
    "admin.users.manage": frozenset({Role.ADMIN}),
    "admin.cache.manage": frozenset({Role.ADMIN}),
    "admin.ratelimits.read": frozenset({Role.ADMIN}),
    "admin.errors.read": frozenset({Role.ADMIN}),
    "admin.stats.read": frozenset({Role.ADMIN}),
    # moderation
    "moderation.messages.delete": frozenset({Role.ADMIN, Role.MODERATOR}),
    "moderation.users.mute": frozenset({Role.ADMIN, Role.MODERATOR}),
    "admin.reports.manage": frozenset({Role.ADMIN, Role.MODERATOR}),  # the moderation queue
    "admin.forum.manage": frozenset({Role.ADMIN}),  # forum categories
    "admin.servers.manage": frozenset({Role.ADMIN}),  # game servers and their plugin API keys
    # pin, lock and remove forum threads, feed posts, comments, group and event content
    "community.moderate": frozenset({Role.ADMIN, Role.MODERATOR}),
    # everyone signed in
    "rooms.create": frozenset({Role.ADMIN, Role.MODERATOR, Role.MEMBER}),
    "messages.publish": frozenset({Role.ADMIN, Role.MODERATOR, Role.MEMBER, Role.BOT}),
}

CHANNEL_PERMISSIONS: dict[str, frozenset[ChannelRole]] = {
    "channel.invite": frozenset({ChannelRole.OWNER, ChannelRole.MODERATOR}),
    "channel.moderate": frozenset({ChannelRole.OWNER, ChannelRole.MODERATOR}),
    "channel.publish": frozenset({ChannelRole.OWNER, ChannelRole.MODERATOR, ChannelRole.MEMBER}),
    "channel.settings": frozenset({ChannelRole.OWNER}),
}


def allowed(role: str, permission: str) -> bool:
    try:
        return Role(role) in PERMISSIONS[permission]
    except (ValueError, KeyError):
        return False


def channel_allowed(role: str | None, permission: str) -> bool:
    if role is None:
        return False
    try:
        return ChannelRole(role) in CHANNEL_PERMISSIONS[permission]
    except (ValueError, KeyError):
        return False
