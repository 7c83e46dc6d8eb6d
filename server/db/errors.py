"""Database constraint failures as our own exceptions, the same on SQLite and PostgreSQL.

Services catch `UniqueViolation` and turn it into a 409 with a clear code (`username_taken`);
nothing above the data layer needs to know the driver's exception types or message formats.
"""

from __future__ import annotations

import re
import sqlite3

import asyncpg


class IntegrityViolation(Exception):
    """A constraint refused the write. `constraint` names it when the driver tells us."""

    def __init__(self, constraint: str | None, detail: str) -> None:
        super().__init__(detail)
        self.constraint = constraint


class UniqueViolation(IntegrityViolation):
    pass


class ForeignKeyViolation(IntegrityViolation):
    pass


_SQLITE_UNIQUE_INDEX = re.compile(r"UNIQUE constraint failed: index '([^']+)'")
_SQLITE_UNIQUE_COLUMNS = re.compile(r"UNIQUE constraint failed: ([\w.]+(?:, [\w.]+)*)")


def translate(exc: BaseException) -> IntegrityViolation | None:
    """Our exception for a driver's integrity error, or None when it is something else."""
    if isinstance(exc, asyncpg.UniqueViolationError):
        return UniqueViolation(exc.constraint_name, "unique constraint violated")
    if isinstance(exc, asyncpg.ForeignKeyViolationError):
        return ForeignKeyViolation(exc.constraint_name, "foreign key violated")
    if isinstance(exc, asyncpg.IntegrityConstraintViolationError):
        return IntegrityViolation(getattr(exc, "constraint_name", None), "constraint violated")
    if isinstance(exc, sqlite3.IntegrityError):
        text = str(exc)
        if text.startswith("UNIQUE"):
            match = _SQLITE_UNIQUE_INDEX.search(text)
            if match:
                return UniqueViolation(match.group(1), "unique constraint violated")
            columns = _SQLITE_UNIQUE_COLUMNS.search(text)
            return UniqueViolation(_sqlite_columns_to_name(columns.group(1)) if columns else None,
                                   "unique constraint violated")
        if text.startswith("FOREIGN KEY"):
            return ForeignKeyViolation(None, "foreign key violated")
        return IntegrityViolation(None, "constraint violated")
    return None


def _sqlite_columns_to_name(columns: str) -> str:
    """`users.email, users.x` -> `uq_users_email_x`, matching our naming convention."""
    parts = [c.strip() for c in columns.split(",")]
    table = parts[0].split(".")[0]
    return "uq_" + table + "_" + "_".join(p.split(".")[-1] for p in parts)
