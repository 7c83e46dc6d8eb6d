"""People: who may DM a member, and the reverse lookup of friendships and blocks.

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-04
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # A plain ADD COLUMN: SQLite's batch mode would copy `users` and lose its expression indexes.
    # The allowed values are checked by the API (`server/routes/people.py`).
    op.add_column("users", sa.Column("dm_policy", sa.String(length=16), nullable=False, server_default="everyone"))
    # friends.incoming / blocks.between: rows pointing at a user, by status
    op.drop_index("ix_friendships_friend_id", table_name="friendships")
    op.create_index("ix_friendships_friend_id_status", "friendships", ["friend_id", "status"])


def downgrade() -> None:
    op.drop_index("ix_friendships_friend_id_status", table_name="friendships")
    op.create_index("ix_friendships_friend_id", "friendships", ["friend_id"])
    op.execute("ALTER TABLE users DROP COLUMN dm_policy")  # PostgreSQL, and SQLite >= 3.35
