"""Database URL parsing: one user-facing `DATABASE_URL`, the driver URLs each library wants.

Users write `sqlite:///./vonix.db` or `postgresql://user:pw@host/db`; `databases` and Alembic's
async engine each want their own driver prefix. Keeping the translation here means no other
module ever string-mangles a URL.
"""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy.engine import URL, make_url
from sqlalchemy.exc import ArgumentError

_SQLITE_SCHEMES = {"sqlite", "sqlite+aiosqlite"}
_POSTGRES_SCHEMES = {"postgresql", "postgres", "postgresql+asyncpg"}


class InvalidDatabaseUrl(ValueError):
    """The URL is not one Vonix can use."""


@dataclass(frozen=True, slots=True)
class DatabaseUrl:
    url: URL

    @property
    def is_sqlite(self) -> bool:
        return self.url.drivername in _SQLITE_SCHEMES

    @property
    def is_postgres(self) -> bool:
        return not self.is_sqlite

    @property
    def dialect(self) -> str:
        return "sqlite" if self.is_sqlite else "postgresql"

    @property
    def for_databases(self) -> str:
        """URL for the `databases` package (it picks aiosqlite / asyncpg itself)."""
        return self.url.set(drivername=self.dialect).render_as_string(hide_password=False)

    @property
    def for_sqlalchemy_async(self) -> str:
        """URL for SQLAlchemy's async engine (used by Alembic)."""
        driver = "sqlite+aiosqlite" if self.is_sqlite else "postgresql+asyncpg"
        return self.url.set(drivername=driver).render_as_string(hide_password=False)

    @property
    def safe(self) -> str:
        """Printable form: the password is masked."""
        return self.url.render_as_string(hide_password=True)


def parse_database_url(raw: str) -> DatabaseUrl:
    try:
        url = make_url(raw)
    except (ArgumentError, ValueError) as exc:
        raise InvalidDatabaseUrl(f"not a database URL ({exc.__class__.__name__})") from None
    if url.drivername in _SQLITE_SCHEMES:
        if not url.database or url.host:
            raise InvalidDatabaseUrl(
                "a SQLite URL looks like sqlite:///relative/path.db or sqlite:////absolute/path.db"
            )
        return DatabaseUrl(url)
    if url.drivername in _POSTGRES_SCHEMES:
        if not url.host and not url.query.get("host"):
            raise InvalidDatabaseUrl("a PostgreSQL URL needs a host: postgresql://user:pw@host:5432/db")
        if not url.database:
            raise InvalidDatabaseUrl("a PostgreSQL URL needs a database name after the host")
        return DatabaseUrl(url.set(drivername="postgresql"))
    raise InvalidDatabaseUrl(
        f"unsupported scheme {url.drivername!r}; use sqlite:/// or postgresql://"
    )
