"""Game server API keys, each game server's bot account and the in-game link codes (issue 18).

Revision ID: 0016
Revises: 0015
Create Date: 2026-12-04
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0016"
down_revision = "0015"
branch_labels = None
depends_on = None

BigId = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def _time(name: str, nullable: bool = False) -> sa.Column[object]:
    return sa.Column(name, sa.DateTime(timezone=True), nullable=nullable)


def upgrade() -> None:
    op.create_table(
        "mc_api_keys",
        sa.Column("id", BigId, autoincrement=True, nullable=False),
        sa.Column("server_id", BigId, sa.ForeignKey("mc_servers.id", ondelete="CASCADE",
                                                    name=op.f("fk_mc_api_keys_server_id_mc_servers")),
                  nullable=False),
        sa.Column("name", sa.String(length=64), nullable=False),
        sa.Column("key_hash", sa.String(length=64), nullable=False),
        sa.Column("prefix", sa.String(length=16), nullable=False),
        _time("created_at"),
        sa.Column("created_by", BigId, sa.ForeignKey("users.id", ondelete="SET NULL",
                                                     name=op.f("fk_mc_api_keys_created_by_users")), nullable=True),
        _time("last_used_at", nullable=True),
        _time("revoked_at", nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_mc_api_keys")),
        sa.UniqueConstraint("key_hash", name=op.f("uq_mc_api_keys_key_hash")),
    )
    op.create_index("ix_mc_api_keys_server_id", "mc_api_keys", ["server_id"])
    op.create_table(
        "mc_server_bots",
        sa.Column("server_id", BigId, sa.ForeignKey("mc_servers.id", ondelete="CASCADE",
                                                    name=op.f("fk_mc_server_bots_server_id_mc_servers")),
                  nullable=False),
        sa.Column("user_id", BigId, sa.ForeignKey("users.id", ondelete="CASCADE",
                                                  name=op.f("fk_mc_server_bots_user_id_users")), nullable=False),
        _time("created_at"),
        sa.PrimaryKeyConstraint("server_id", name=op.f("pk_mc_server_bots")),
        sa.UniqueConstraint("user_id", name=op.f("uq_mc_server_bots_user_id")),
    )
    op.create_table(
        "mc_link_codes",
        sa.Column("id", BigId, autoincrement=True, nullable=False),
        sa.Column("code_hash", sa.String(length=64), nullable=False),
        sa.Column("server_id", BigId, sa.ForeignKey("mc_servers.id", ondelete="CASCADE",
                                                    name=op.f("fk_mc_link_codes_server_id_mc_servers")),
                  nullable=False),
        sa.Column("minecraft_name", sa.String(length=16), nullable=False),
        sa.Column("minecraft_uuid", sa.String(length=36), nullable=False),
        _time("created_at"),
        _time("expires_at"),
        _time("used_at", nullable=True),
        sa.Column("used_by", BigId, sa.ForeignKey("users.id", ondelete="SET NULL",
                                                  name=op.f("fk_mc_link_codes_used_by_users")), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_mc_link_codes")),
        sa.UniqueConstraint("code_hash", name=op.f("uq_mc_link_codes_code_hash")),
        sa.UniqueConstraint("minecraft_uuid", name=op.f("uq_mc_link_codes_minecraft_uuid")),
    )
    op.create_index("ix_mc_link_codes_server_id", "mc_link_codes", ["server_id"])


def downgrade() -> None:
    op.drop_index("ix_mc_link_codes_server_id", table_name="mc_link_codes")
    op.drop_table("mc_link_codes")
    op.drop_table("mc_server_bots")
    op.drop_index("ix_mc_api_keys_server_id", table_name="mc_api_keys")
    op.drop_table("mc_api_keys")
