"""Lock unknown accounts by the login tried, so they answer exactly like real ones.

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-25
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("lockouts") as batch:
        batch.add_column(sa.Column("login", sa.String(length=254), nullable=True))
    op.create_index("ix_lockouts_login_locked_until", "lockouts", ["login", "locked_until"])
    op.create_index("ix_lockouts_ip_locked_until", "lockouts", ["ip", "locked_until"])
    op.create_index("ix_login_attempts_login_created_at", "login_attempts", ["login", "created_at"])


def downgrade() -> None:
    op.drop_index("ix_login_attempts_login_created_at", table_name="login_attempts")
    op.drop_index("ix_lockouts_ip_locked_until", table_name="lockouts")
    op.drop_index("ix_lockouts_login_locked_until", table_name="lockouts")
    with op.batch_alter_table("lockouts") as batch:
        batch.drop_column("login")
