"""`vonix migrate` on empty SQLite and PostgreSQL: to head, idempotent, reversible, equal to tables.py."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import warnings
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy.ext.asyncio import create_async_engine

from server.db.tables import metadata
from server.db.urls import parse_database_url
from tests.support.services import PostgresServer

ROOT = Path(__file__).resolve().parents[2]


def vonix(*args: str, database_url: str) -> str:
    env = {**os.environ, "DATABASE_URL": database_url, "PYTHONPATH": str(ROOT)}
    result = subprocess.run([sys.executable, "-m", "server.cli", *args], env=env, capture_output=True,
                            text=True, timeout=120, cwd=ROOT)
    assert result.returncode == 0, result.stderr
    return result.stdout


def snapshot(url: str) -> dict[str, Any]:
    """Tables, columns, indexes, uniques, foreign keys and checks as comparable plain data."""

    def inspect(connection: sa.Connection) -> dict[str, Any]:
        inspector = sa.inspect(connection)
        schema: dict[str, Any] = {}
        for table in sorted(inspector.get_table_names()):
            schema[table] = {
                "columns": [(c["name"], str(c["type"]), c["nullable"]) for c in inspector.get_columns(table)],
                "indexes": sorted((i["name"], tuple(map(str, i["column_names"])), bool(i["unique"]))
                                  for i in inspector.get_indexes(table)),
                "uniques": sorted((u["name"], tuple(u["column_names"]))
                                  for u in inspector.get_unique_constraints(table)),
                "fks": sorted((f["name"] or "", tuple(f["constrained_columns"]), f["referred_table"])
                              for f in inspector.get_foreign_keys(table)),
                "pk": tuple(inspector.get_pk_constraint(table)["constrained_columns"]),
            }
        return schema

    async def run() -> dict[str, Any]:
        engine = create_async_engine(parse_database_url(url).for_sqlalchemy_async)
        try:
            async with engine.connect() as connection:
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore")  # SQLAlchemy warns on expression indexes
                    return await connection.run_sync(inspect)
        finally:
            await engine.dispose()

    return asyncio.run(run())


def metadata_diff(url: str) -> list[Any]:
    async def run() -> list[Any]:
        engine = create_async_engine(parse_database_url(url).for_sqlalchemy_async)
        try:
            async with engine.connect() as connection:
                def compare(sync: sa.Connection) -> list[Any]:
                    with warnings.catch_warnings():
                        warnings.simplefilter("ignore")
                        context = MigrationContext.configure(sync, opts={"compare_type": True})
                        return list(compare_metadata(context, metadata))
                return await connection.run_sync(compare)
        finally:
            await engine.dispose()

    return asyncio.run(run())


@pytest.fixture(params=["sqlite", "postgresql"])
def empty_database(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path}/empty.db"
    server: PostgresServer = request.getfixturevalue("postgres_service")
    server.psql("DROP DATABASE IF EXISTS migrate_check")
    server.psql("CREATE DATABASE migrate_check")
    return server.url("migrate_check")


def test_migrate_up_is_idempotent_and_down_up_restores_schema(empty_database: str) -> None:
    assert "at head" in vonix("migrate", database_url=empty_database)
    first = snapshot(empty_database)
    assert {"users", "sessions", "messages", "messages_archive", "notifications"} <= set(first)
    assert "at head" in vonix("migrate", database_url=empty_database)
    assert snapshot(empty_database) == first

    assert "behind head" in vonix("migrate", "down", "--revision", "base", database_url=empty_database)
    assert set(snapshot(empty_database)) == {"alembic_version"}
    vonix("migrate", "up", database_url=empty_database)
    assert snapshot(empty_database) == first


def test_migrations_match_table_definitions(empty_database: str) -> None:
    vonix("migrate", database_url=empty_database)
    diff = [d for d in metadata_diff(empty_database)
            if not (isinstance(d, tuple) and d[0] in {"add_index", "remove_index"}
                    and d[1].name in _EXPRESSION_INDEXES) and not _search_index(d)]
    assert diff == []


def _search_index(diff: Any) -> bool:
    """The full-text index is dialect-specific (migration 0009) and deliberately not in the metadata:
    PostgreSQL's generated `messages.search` column and its GIN index, SQLite's FTS5 tables."""
    if not isinstance(diff, tuple):
        return False
    if diff[0] == "remove_index":
        return diff[1].name == "ix_messages_search"
    if diff[0] == "remove_column":
        return diff[2] == "messages" and diff[3].name == "search"
    if diff[0] == "remove_table":
        return diff[1].name.startswith("messages_fts")
    return False


# Expression/partial indexes are not compared by Alembic's autogenerate; the snapshot test above
# and the query-plan tests cover them.
_EXPRESSION_INDEXES = {"uq_users_username_lower", "uq_users_email_lower", "uq_bots_name_lower"}
