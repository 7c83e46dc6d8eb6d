"""Tables of the community's groups and events (registered on the one metadata of server/db/tables.py).

A group's member count and an event's RSVP counts are columns, updated in the same transaction as
the membership or RSVP row that changes them, so lists never aggregate. `events.private` copies
the group's visibility when the event is created (a group's visibility never changes), so the
event lists filter on the event row alone plus the viewer's own memberships.
"""

from __future__ import annotations

import sqlalchemy as sa

from server.db.tables import _created, _id, _user_fk, metadata
from server.db.types import BigId, UtcDateTime

GROUP_ROLES = ("owner", "moderator", "member", "pending")
RSVP_STATUSES = ("going", "interested", "not_going")

groups = sa.Table(
    "groups",
    metadata,
    _id(),
    sa.Column("name", sa.String(64), nullable=False),
    sa.Column("slug", sa.String(64), nullable=False),
    sa.Column("description", sa.Text(), nullable=True),
    sa.Column("visibility", sa.String(8), nullable=False, server_default="public"),
    # the group's chat room (channels.id); NULL only while the group is being created
    sa.Column("room_channel_id", BigId, sa.ForeignKey("channels.id", ondelete="SET NULL"), nullable=True),
    sa.Column("members", sa.Integer(), nullable=False, server_default="0"),  # owner, moderators, members
    _created(),
    sa.CheckConstraint("visibility IN ('public','private')", name="visibility"),
)
# serves groups.insert (a name is taken whatever its case)
sa.Index("uq_groups_name_lower", sa.func.lower(groups.c.name), unique=True)
# serves groups.by_room (leaving or inviting into a room asks whether it is a group's; migration
# 0014) and the SET NULL when a channel is deleted
sa.Index("ix_groups_room_channel_id", groups.c.room_channel_id)

group_members = sa.Table(  # one row per member and per pending request
    "group_members",
    metadata,
    sa.Column("group_id", BigId, sa.ForeignKey("groups.id", ondelete="CASCADE"), nullable=False),
    _user_fk(),
    sa.Column("role", sa.String(16), nullable=False),
    _created(),  # joined (or asked to join) at
    # serves groups.role, groups.members, groups.requests, groups.staff (a group's rows by user)
    sa.PrimaryKeyConstraint("group_id", "user_id"),
    sa.CheckConstraint("role IN ('owner','moderator','member','pending')", name="role"),
)
# serves groups.list (the viewer's private groups) and events.list (the viewer's groups' events)
sa.Index("ix_group_members_user_id_group_id", group_members.c.user_id, group_members.c.group_id)

events = sa.Table(
    "events",
    metadata,
    _id(),
    sa.Column("title", sa.String(200), nullable=False),
    sa.Column("description", sa.Text(), nullable=True),
    sa.Column("starts_at", UtcDateTime(), nullable=False),
    sa.Column("ends_at", UtcDateTime(), nullable=False),
    sa.Column("timezone", sa.String(64), nullable=False, server_default="UTC"),
    sa.Column("place_kind", sa.String(8), nullable=True),  # NULL: no place given
    sa.Column("place_server", sa.String(64), nullable=True),
    sa.Column("place_text", sa.String(200), nullable=True),
    sa.Column("capacity", sa.Integer(), nullable=True),  # NULL: no limit on `going`
    sa.Column("group_id", BigId, sa.ForeignKey("groups.id", ondelete="CASCADE"), nullable=True),
    sa.Column("private", sa.Boolean(), nullable=False, server_default=sa.false()),  # a private group's
    _user_fk("author_id", nullable=True, ondelete="SET NULL"),  # a deleted author leaves the event
    sa.Column("going", sa.Integer(), nullable=False, server_default="0"),
    sa.Column("interested", sa.Integer(), nullable=False, server_default="0"),
    sa.Column("not_going", sa.Integer(), nullable=False, server_default="0"),
    sa.Column("reminder_sent_at", UtcDateTime(), nullable=True),  # claimed by one replica, once
    _created(),
    sa.CheckConstraint("place_kind IN ('server','text')", name="place_kind"),
    sa.CheckConstraint("ends_at > starts_at", name="ends_after_start"),
)
# serves events.list (upcoming and past, keyset on (starts_at, id)) and events.due_reminders
sa.Index("ix_events_starts_at_id", events.c.starts_at, events.c.id)
sa.Index("ix_events_group_id_starts_at_id", events.c.group_id, events.c.starts_at, events.c.id)  # events.list_group

event_rsvps = sa.Table(  # one answer per member per event
    "event_rsvps",
    metadata,
    sa.Column("event_id", BigId, sa.ForeignKey("events.id", ondelete="CASCADE"), nullable=False),
    _user_fk(),
    sa.Column("status", sa.String(16), nullable=False),
    _created(),
    sa.Column("updated_at", UtcDateTime(), nullable=False),
    sa.PrimaryKeyConstraint("event_id", "user_id"),  # serves events.rsvp, events.my_status, events.reminded
    sa.CheckConstraint("status IN ('going','interested','not_going')", name="status"),
)
