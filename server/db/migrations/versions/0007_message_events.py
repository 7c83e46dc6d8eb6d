"""Message edits, deletes and reactions as events: each message remembers the last event that
changed it (`revision`, the event's offset) and keeps what it said before (`message_edits`).

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-04
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None

BigId = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    # Plain ADD COLUMNs (SQLite's batch mode would copy the tables and lose their partial indexes).
    op.add_column("messages", sa.Column("revision", sa.BigInteger(), nullable=False, server_default="0"))
    op.add_column("messages_archive", sa.Column("revision", sa.BigInteger(), nullable=False, server_default="0"))
    op.create_table(
        "message_edits",
        sa.Column("id", BigId, autoincrement=True, nullable=False),
        sa.Column("message_id", BigId, nullable=False),
        sa.Column("editor_id", BigId, nullable=True),
        sa.Column("action", sa.String(length=16), nullable=False),
        sa.Column("data", sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), "postgresql"), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.CheckConstraint("action IN ('edit','delete')", name=op.f("ck_message_edits_action")),
        sa.ForeignKeyConstraint(["message_id"], ["messages.id"], name=op.f("fk_message_edits_message_id_messages"),
                                ondelete="CASCADE"),
        sa.ForeignKeyConstraint(["editor_id"], ["users.id"], name=op.f("fk_message_edits_editor_id_users"),
                                ondelete="SET NULL"),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_message_edits")),
    )
    op.create_index("ix_message_edits_message_id", "message_edits", ["message_id"])


def downgrade() -> None:
    op.drop_index("ix_message_edits_message_id", table_name="message_edits")
    op.drop_table("message_edits")
    op.execute("ALTER TABLE messages_archive DROP COLUMN revision")
    op.execute("ALTER TABLE messages DROP COLUMN revision")
