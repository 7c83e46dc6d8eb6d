"""Game servers (admin-configured, with their latest status and favicon) and their status
history: one row per poll, folded into hourly rows by maintenance (issue 18).

Revision ID: 0015
Revises: 0014
Create Date: 2026-12-04
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision = "0015"
down_revision = "0014"
branch_labels = None
depends_on = None

BigId = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
Json = sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), "postgresql")


def _time(name: str, nullable: bool = False) -> sa.Column[object]:
    return sa.Column(name, sa.DateTime(timezone=True), nullable=nullable)


def upgrade() -> None:
    op.create_table(
        "mc_servers",
        sa.Column("id", BigId, autoincrement=True, nullable=False),
        sa.Column("name", sa.String(length=100), nullable=False),
        sa.Column("description", sa.String(length=500), nullable=False, server_default=""),
        sa.Column("host", sa.String(length=253), nullable=False),
        sa.Column("port", sa.Integer(), nullable=False),
        sa.Column("edition", sa.String(length=8), nullable=False, server_default="java"),
        sa.Column("version", sa.String(length=64), nullable=False, server_default=""),
        sa.Column("modpack", sa.String(length=100), nullable=False, server_default=""),
        sa.Column("map_url", sa.String(length=500), nullable=True),
        sa.Column("modpack_url", sa.String(length=500), nullable=True),
        sa.Column("position", sa.Integer(), nullable=False, server_default="0"),
        sa.Column("status", Json, nullable=True),
        _time("checked_at", nullable=True),
        sa.Column("favicon", sa.LargeBinary(), nullable=True),
        sa.Column("favicon_hash", sa.String(length=16), nullable=True),
        sa.Column("exact_players", Json, nullable=True),
        _time("created_at"),
        _time("updated_at"),
        sa.CheckConstraint("edition IN ('java','bedrock')", name=op.f("ck_mc_servers_edition")),
        sa.CheckConstraint("port BETWEEN 1 AND 65535", name=op.f("ck_mc_servers_port")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_mc_servers")),
    )
    op.create_index("uq_mc_servers_name_lower", "mc_servers", [sa.literal_column("lower(name)")], unique=True)
    op.create_table(
        "mc_status_samples",
        sa.Column("id", BigId, autoincrement=True, nullable=False),
        sa.Column("server_id", BigId, nullable=False),
        _time("at"),
        sa.Column("online", sa.Boolean(), nullable=False),
        sa.Column("players", sa.Integer(), nullable=False, server_default="0"),
        sa.Column("max", sa.Integer(), nullable=False, server_default="0"),
        sa.Column("latency_ms", sa.Float(), nullable=True),
        sa.Column("reason", sa.String(length=16), nullable=True),
        sa.ForeignKeyConstraint(["server_id"], ["mc_servers.id"],
                                name=op.f("fk_mc_status_samples_server_id_mc_servers"), ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_mc_status_samples")),
    )
    op.create_index("ix_mc_status_samples_server_id_at", "mc_status_samples", ["server_id", "at"])
    op.create_index("ix_mc_status_samples_at", "mc_status_samples", ["at"])
    op.create_table(
        "mc_status_hourly",
        sa.Column("server_id", BigId, nullable=False),
        _time("hour"),
        sa.Column("polls", sa.Integer(), nullable=False),
        sa.Column("online_polls", sa.Integer(), nullable=False),
        sa.Column("players_sum", sa.BigInteger(), nullable=False),
        sa.Column("players_peak", sa.Integer(), nullable=False),
        sa.Column("max", sa.Integer(), nullable=False),
        sa.ForeignKeyConstraint(["server_id"], ["mc_servers.id"], name=op.f("fk_mc_status_hourly_server_id_mc_servers"),
                                ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("server_id", "hour", name=op.f("pk_mc_status_hourly")),
    )
    op.create_index("ix_mc_status_hourly_hour", "mc_status_hourly", ["hour"])


def downgrade() -> None:
    op.drop_index("ix_mc_status_hourly_hour", table_name="mc_status_hourly")
    op.drop_table("mc_status_hourly")
    op.drop_index("ix_mc_status_samples_at", table_name="mc_status_samples")
    op.drop_index("ix_mc_status_samples_server_id_at", table_name="mc_status_samples")
    op.drop_table("mc_status_samples")
    op.drop_index("uq_mc_servers_name_lower", table_name="mc_servers")
    op.drop_table("mc_servers")
