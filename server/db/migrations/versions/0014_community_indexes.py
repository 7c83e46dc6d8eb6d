"""Indexes the community's queries were missing (found by tests/integration/
test_community_query_plans.py): a group by its chat room, which leaving a room or inviting into
one looks up (a group's room follows the group), and which deleting a channel needs for its
`ON DELETE SET NULL`.

Revision ID: 0014
Revises: 0013
Create Date: 2026-12-05
"""

from __future__ import annotations

from alembic import op

revision = "0014"
down_revision = "0013"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_index("ix_groups_room_channel_id", "groups", ["room_channel_id"])


def downgrade() -> None:
    op.drop_index("ix_groups_room_channel_id", table_name="groups")
