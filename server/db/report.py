"""What `GET /api/admin/db` shows: slowest statements, pool state, table sizes, index usage.

PostgreSQL answers from `pg_stat_user_tables` / `pg_stat_user_indexes`; SQLite has no usage
statistics, so it reports row counts and the index list, and says so.
"""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa

from server.db.database import Database
from server.db.tables import metadata


def _slowest(db: Database, limit: int = 10) -> list[dict[str, Any]]:
    stats: dict[str, dict[str, float]] = {}
    for family in db.query_latency.collect():
        for sample in family.samples:
            name = sample.labels.get("query")
            if name is None:
                continue
            entry = stats.setdefault(name, {"count": 0.0, "sum": 0.0})
            if sample.name.endswith("_count"):
                entry["count"] = sample.value
            elif sample.name.endswith("_sum"):
                entry["sum"] = sample.value
    rows: list[dict[str, Any]] = [
        {"query": name, "calls": int(v["count"]), "total_ms": round(v["sum"] * 1000, 2),
         "mean_ms": round(v["sum"] * 1000 / v["count"], 3) if v["count"] else 0.0}
        for name, v in stats.items()
    ]
    return sorted(rows, key=lambda r: r["mean_ms"], reverse=True)[:limit]


async def database_report(db: Database) -> dict[str, Any]:
    report: dict[str, Any] = {
        "dialect": db.dialect,
        "pool": db.pool_state(),
        "slowest_queries": _slowest(db),
        "recent_slow_queries": list(reversed(db.recent_slow[-20:])),
        "slow_query_threshold_ms": round(db.slow_query_seconds * 1000, 1),
    }
    if db.dialect == "postgresql":
        report.update(await _postgres(db))
    else:
        report.update(await _sqlite(db))
    return report


async def _postgres(db: Database) -> dict[str, Any]:
    tables = await db.fetch_all("admin.table_sizes", sa.text(
        "SELECT relname AS name, n_live_tup AS rows, pg_total_relation_size(relid) AS bytes, "
        "seq_scan, idx_scan FROM pg_stat_user_tables ORDER BY pg_total_relation_size(relid) DESC"))
    indexes = await db.fetch_all("admin.index_usage", sa.text(
        "SELECT s.relname AS table_name, s.indexrelname AS name, s.idx_scan AS scans, "
        "pg_relation_size(s.indexrelid) AS bytes, i.indisunique AS is_unique, i.indisprimary AS is_primary "
        "FROM pg_stat_user_indexes s JOIN pg_index i ON i.indexrelid = s.indexrelid "
        "ORDER BY s.idx_scan ASC, pg_relation_size(s.indexrelid) DESC"))
    index_rows = [dict(r._mapping) for r in indexes]
    return {
        "tables": [dict(r._mapping) for r in tables],
        "indexes": index_rows,
        # Unique and primary indexes enforce constraints even when never scanned: not "unused".
        "unused_indexes": [r for r in index_rows if r["scans"] == 0 and not r["is_unique"]
                           and not r["is_primary"]],
        "index_usage_source": "pg_stat_user_indexes (since the last statistics reset)",
    }


async def _sqlite(db: Database) -> dict[str, Any]:
    tables = []
    for table in sorted(metadata.tables):
        count = await db.fetch_val("admin.table_rows", sa.text(f'SELECT count(*) FROM "{table}"'))
        tables.append({"name": table, "rows": count})
    indexes = await db.fetch_all("admin.index_list", sa.text(
        "SELECT tbl_name AS table_name, name FROM sqlite_master WHERE type = 'index' ORDER BY tbl_name, name"))
    return {
        "tables": tables,
        "indexes": [dict(r._mapping) for r in indexes],
        "unused_indexes": None,
        "index_usage_source": "not available on SQLite (no usage statistics)",
    }
