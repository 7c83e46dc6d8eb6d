"""Game server API keys, link codes and each game server's bot (issue 18; docs/plugins.md).

- `mc_api_keys`: a plugin's key (`vxs_…`), shown once, stored as its SHA-256; scoped to one game
  server; revoked keys keep their row (the admin list shows them) and stop working at once.
- `mc_server_bots`: the bot account a game server's keys sign in as (created with its first key);
  its messages in chat are the server's (the game chat bridge).
- `mc_link_codes`: the code a player asks for in game. One row per Minecraft UUID (a new request
  replaces the old code: one live code per player); `used_at` marks it spent (single use).
"""

from __future__ import annotations

import sqlalchemy as sa

from server.db.tables import _created, _id, _user_fk, metadata
from server.db.types import BigId, UtcDateTime

mc_api_keys = sa.Table(
    "mc_api_keys",
    metadata,
    _id(),
    sa.Column("server_id", BigId, sa.ForeignKey("mc_servers.id", ondelete="CASCADE"), nullable=False),
    sa.Column("name", sa.String(64), nullable=False),
    sa.Column("key_hash", sa.String(64), nullable=False),
    sa.Column("prefix", sa.String(16), nullable=False),  # shown in lists: which key is which
    _created(),
    _user_fk("created_by", nullable=True, ondelete="SET NULL"),
    sa.Column("last_used_at", UtcDateTime(), nullable=True),  # written at most once a minute
    sa.Column("revoked_at", UtcDateTime(), nullable=True),
    sa.UniqueConstraint("key_hash"),  # serves mc_keys.by_hash (every plugin request)
)
sa.Index("ix_mc_api_keys_server_id", mc_api_keys.c.server_id)  # serves mc_keys.list and the cascade

mc_server_bots = sa.Table(
    "mc_server_bots",
    metadata,
    sa.Column("server_id", BigId, sa.ForeignKey("mc_servers.id", ondelete="CASCADE"), primary_key=True),
    _user_fk(),  # the bot's account (role bot, with a `bots` row)
    _created(),
    sa.UniqueConstraint("user_id"),  # serves mc_bots.server_of (a stored message's author -> server)
)

mc_link_codes = sa.Table(
    "mc_link_codes",
    metadata,
    _id(),
    sa.Column("code_hash", sa.String(64), nullable=False),
    sa.Column("server_id", BigId, sa.ForeignKey("mc_servers.id", ondelete="CASCADE"), nullable=False),
    sa.Column("minecraft_name", sa.String(16), nullable=False),
    sa.Column("minecraft_uuid", sa.String(36), nullable=False),  # dashed, lower case
    _created(),
    sa.Column("expires_at", UtcDateTime(), nullable=False),
    sa.Column("used_at", UtcDateTime(), nullable=True),
    _user_fk("used_by", nullable=True, ondelete="SET NULL"),
    sa.UniqueConstraint("code_hash"),  # serves mc_codes.by_hash (redeeming)
    sa.UniqueConstraint("minecraft_uuid"),  # one code per player; serves the replace on a new request
)
sa.Index("ix_mc_link_codes_server_id", mc_link_codes.c.server_id)  # serves the cascade
