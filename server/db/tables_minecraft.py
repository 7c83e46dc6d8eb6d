"""Game servers and their status history (issue 18; docs/minecraft.md).

`mc_servers` holds what an admin configures plus the latest status (`status`, JSON as the API
shows it, and `checked_at`), so every replica answers `GET /api/servers` from one indexed read
whichever replica polled. The favicon's bytes live on the row too (validated PNG, at most
64 KiB), served by any replica. `exact_players` is the online list a game chat bridge reports
(NULL: no bridge; the poll's sample is shown).

History: one `mc_status_samples` row per poll; maintenance folds rows older than 48 hours into
`mc_status_hourly` (one row per server and hour) and prunes both past MC_STATUS_RETENTION_DAYS.
A poll is counted in exactly one of the two tables, so uptime adds them up without overlap.
"""

from __future__ import annotations

import sqlalchemy as sa

from server.db.tables import _created, _id, metadata
from server.db.types import BigId, Json, UtcDateTime

EDITIONS = ("java", "bedrock")

mc_servers = sa.Table(
    "mc_servers",
    metadata,
    _id(),
    sa.Column("name", sa.String(100), nullable=False),
    sa.Column("description", sa.String(500), nullable=False, server_default=""),
    sa.Column("host", sa.String(253), nullable=False),
    sa.Column("port", sa.Integer(), nullable=False),
    sa.Column("edition", sa.String(8), nullable=False, server_default="java"),
    sa.Column("version", sa.String(64), nullable=False, server_default=""),
    sa.Column("modpack", sa.String(100), nullable=False, server_default=""),
    sa.Column("map_url", sa.String(500), nullable=True),
    sa.Column("modpack_url", sa.String(500), nullable=True),
    sa.Column("position", sa.Integer(), nullable=False, server_default="0"),
    sa.Column("status", Json, nullable=True),  # the latest poll as shown (NULL before the first)
    sa.Column("checked_at", UtcDateTime(), nullable=True),
    sa.Column("favicon", sa.LargeBinary(), nullable=True),
    sa.Column("favicon_hash", sa.String(16), nullable=True),
    sa.Column("exact_players", Json, nullable=True),  # a bridge's online list; NULL: none
    _created(),
    sa.Column("updated_at", UtcDateTime(), nullable=False),
    sa.CheckConstraint("edition IN ('java','bedrock')", name="edition"),
    sa.CheckConstraint("port BETWEEN 1 AND 65535", name="port"),
)
# serves servers.insert / update (a name is taken whatever its case)
sa.Index("uq_mc_servers_name_lower", sa.func.lower(mc_servers.c.name), unique=True)

mc_status_samples = sa.Table(  # one row per poll
    "mc_status_samples",
    metadata,
    _id(),
    sa.Column("server_id", BigId, sa.ForeignKey("mc_servers.id", ondelete="CASCADE"), nullable=False),
    sa.Column("at", UtcDateTime(), nullable=False),
    sa.Column("online", sa.Boolean(), nullable=False),
    sa.Column("players", sa.Integer(), nullable=False, server_default="0"),
    sa.Column("max", sa.Integer(), nullable=False, server_default="0"),
    sa.Column("latency_ms", sa.Float(), nullable=True),
    sa.Column("reason", sa.String(16), nullable=True),
)
# serves history, uptime and the downsampling (a server's polls by time)
sa.Index("ix_mc_status_samples_server_id_at", mc_status_samples.c.server_id, mc_status_samples.c.at)
# serves maintenance's scan of old polls across servers
sa.Index("ix_mc_status_samples_at", mc_status_samples.c.at)

mc_status_hourly = sa.Table(  # polls older than 48 hours, one row per server and hour
    "mc_status_hourly",
    metadata,
    sa.Column("server_id", BigId, sa.ForeignKey("mc_servers.id", ondelete="CASCADE"), nullable=False),
    sa.Column("hour", UtcDateTime(), nullable=False),
    sa.Column("polls", sa.Integer(), nullable=False),
    sa.Column("online_polls", sa.Integer(), nullable=False),
    sa.Column("players_sum", sa.BigInteger(), nullable=False),  # offline polls count 0
    sa.Column("players_peak", sa.Integer(), nullable=False),
    sa.Column("max", sa.Integer(), nullable=False),
    sa.PrimaryKeyConstraint("server_id", "hour"),  # serves history (7 d) and the fold's merge
)
sa.Index("ix_mc_status_hourly_hour", mc_status_hourly.c.hour)  # serves the prune
