"""Seed the public `room:general` channel every installation starts with.

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-25
"""

from __future__ import annotations

from datetime import UTC, datetime

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None

channels = sa.table(
    "channels",
    sa.column("name", sa.String),
    sa.column("kind", sa.String),
    sa.column("title", sa.String),
    sa.column("topic", sa.Text),
    sa.column("last_offset", sa.BigInteger),
    sa.column("created_at", sa.DateTime(timezone=True)),
)


def upgrade() -> None:
    now = datetime.now(UTC)
    if op.get_bind().dialect.name == "sqlite":
        now = now.replace(tzinfo=None)
    op.bulk_insert(
        channels,
        [{"name": "room:general", "kind": "room", "title": "General",
          "topic": "Say hello to the Vonix Network community", "last_offset": 0, "created_at": now}],
    )


def downgrade() -> None:
    op.execute(channels.delete().where(channels.c.name == "room:general"))
