"""Alembic, driven from code: `vonix migrate`, migrate-on-start and the readiness check.

Alembic's env runs its own event loop (async engine), so callers already inside a loop run these
functions in a worker thread (`asyncio.to_thread`).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from alembic import command
from alembic.config import Config
from alembic.script import ScriptDirectory

from server.db.urls import DatabaseUrl

MIGRATIONS = Path(__file__).parent / "migrations"


def alembic_config(url: DatabaseUrl) -> Config:
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    config.attributes["database_url"] = url
    return config


def head_revision() -> str | None:
    script = ScriptDirectory.from_config(alembic_config_for_scripts())
    return script.get_current_head()


def alembic_config_for_scripts() -> Config:
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    return config


def upgrade(url: DatabaseUrl, revision: str = "head") -> None:
    _ensure_sqlite_directory(url)
    command.upgrade(alembic_config(url), revision)


def downgrade(url: DatabaseUrl, revision: str = "-1") -> None:
    command.downgrade(alembic_config(url), revision)


@dataclass(frozen=True)
class MigrationStatus:
    current: str | None
    head: str | None

    @property
    def at_head(self) -> bool:
        return self.current == self.head


def status(url: DatabaseUrl) -> MigrationStatus:
    """Current and head revision, read with a short-lived synchronous-style async engine."""
    import asyncio

    from sqlalchemy import text
    from sqlalchemy.ext.asyncio import create_async_engine

    async def read() -> str | None:
        engine = create_async_engine(url.for_sqlalchemy_async)
        try:
            async with engine.connect() as connection:
                has_table = await connection.run_sync(
                    lambda sync: sync.dialect.has_table(sync, "alembic_version")
                )
                if not has_table:
                    return None
                return (await connection.execute(text("SELECT version_num FROM alembic_version"))).scalar()
        finally:
            await engine.dispose()

    return MigrationStatus(current=asyncio.run(read()), head=head_revision())


def _ensure_sqlite_directory(url: DatabaseUrl) -> None:
    if url.is_sqlite and url.url.database and url.url.database != ":memory:":
        Path(url.url.database).parent.mkdir(parents=True, exist_ok=True)
