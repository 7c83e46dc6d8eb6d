"""The community's groups (with their members, join requests and chat room) and events (with RSVPs
and the reminder claim). Member and RSVP counts live on the rows.

Revision ID: 0013
Revises: 0012
Create Date: 2026-12-04
"""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa
from alembic import op

revision = "0013"
down_revision = "0012"
branch_labels = None
depends_on = None

BigId = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def _created() -> sa.Column[object]:
    return sa.Column("created_at", sa.DateTime(timezone=True), nullable=False)


def _user(table: str, name: str = "user_id", *, nullable: bool = False,
          ondelete: str = "CASCADE") -> list[Any]:
    return [sa.Column(name, BigId, nullable=nullable),
            sa.ForeignKeyConstraint([name], ["users.id"], name=op.f(f"fk_{table}_{name}_users"), ondelete=ondelete)]


def upgrade() -> None:
    op.create_table(
        "groups",
        sa.Column("id", BigId, autoincrement=True, nullable=False),
        sa.Column("name", sa.String(length=64), nullable=False),
        sa.Column("slug", sa.String(length=64), nullable=False),
        sa.Column("description", sa.Text(), nullable=True),
        sa.Column("visibility", sa.String(length=8), nullable=False, server_default="public"),
        sa.Column("room_channel_id", BigId, nullable=True),
        sa.Column("members", sa.Integer(), nullable=False, server_default="0"),
        _created(),
        sa.CheckConstraint("visibility IN ('public','private')", name=op.f("ck_groups_visibility")),
        sa.ForeignKeyConstraint(["room_channel_id"], ["channels.id"], name=op.f("fk_groups_room_channel_id_channels"),
                                ondelete="SET NULL"),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_groups")),
    )
    op.create_index("uq_groups_name_lower", "groups", [sa.literal_column("lower(name)")], unique=True)
    op.create_table(
        "group_members",
        sa.Column("group_id", BigId, nullable=False),
        *_user("group_members"),
        sa.Column("role", sa.String(length=16), nullable=False),
        _created(),
        sa.CheckConstraint("role IN ('owner','moderator','member','pending')", name=op.f("ck_group_members_role")),
        sa.ForeignKeyConstraint(["group_id"], ["groups.id"], name=op.f("fk_group_members_group_id_groups"),
                                ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("group_id", "user_id", name=op.f("pk_group_members")),
    )
    op.create_index("ix_group_members_user_id_group_id", "group_members", ["user_id", "group_id"])
    op.create_table(
        "events",
        sa.Column("id", BigId, autoincrement=True, nullable=False),
        sa.Column("title", sa.String(length=200), nullable=False),
        sa.Column("description", sa.Text(), nullable=True),
        sa.Column("starts_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("ends_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("timezone", sa.String(length=64), nullable=False, server_default="UTC"),
        sa.Column("place_kind", sa.String(length=8), nullable=True),
        sa.Column("place_server", sa.String(length=64), nullable=True),
        sa.Column("place_text", sa.String(length=200), nullable=True),
        sa.Column("capacity", sa.Integer(), nullable=True),
        sa.Column("group_id", BigId, nullable=True),
        sa.Column("private", sa.Boolean(), nullable=False, server_default=sa.false()),
        *_user("events", "author_id", nullable=True, ondelete="SET NULL"),
        sa.Column("going", sa.Integer(), nullable=False, server_default="0"),
        sa.Column("interested", sa.Integer(), nullable=False, server_default="0"),
        sa.Column("not_going", sa.Integer(), nullable=False, server_default="0"),
        sa.Column("reminder_sent_at", sa.DateTime(timezone=True), nullable=True),
        _created(),
        sa.CheckConstraint("place_kind IN ('server','text')", name=op.f("ck_events_place_kind")),
        sa.CheckConstraint("ends_at > starts_at", name=op.f("ck_events_ends_after_start")),
        sa.ForeignKeyConstraint(["group_id"], ["groups.id"], name=op.f("fk_events_group_id_groups"),
                                ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_events")),
    )
    op.create_index("ix_events_starts_at_id", "events", ["starts_at", "id"])
    op.create_index("ix_events_group_id_starts_at_id", "events", ["group_id", "starts_at", "id"])
    op.create_table(
        "event_rsvps",
        sa.Column("event_id", BigId, nullable=False),
        *_user("event_rsvps"),
        sa.Column("status", sa.String(length=16), nullable=False),
        _created(),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.CheckConstraint("status IN ('going','interested','not_going')", name=op.f("ck_event_rsvps_status")),
        sa.ForeignKeyConstraint(["event_id"], ["events.id"], name=op.f("fk_event_rsvps_event_id_events"),
                                ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("event_id", "user_id", name=op.f("pk_event_rsvps")),
    )


def downgrade() -> None:
    op.drop_table("event_rsvps")
    op.drop_index("ix_events_group_id_starts_at_id", table_name="events")
    op.drop_index("ix_events_starts_at_id", table_name="events")
    op.drop_table("events")
    op.drop_index("ix_group_members_user_id_group_id", table_name="group_members")
    op.drop_table("group_members")
    op.drop_index("uq_groups_name_lower", table_name="groups")
    op.drop_table("groups")
