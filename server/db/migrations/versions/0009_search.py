"""Full-text search over messages: a generated tsvector + GIN index on PostgreSQL, an FTS5 index
kept by triggers on SQLite. Dialect-specific on purpose (`server/services/search.py` has the one
interface over both), so these objects are not in `server/db/tables.py`.

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-04
"""

from __future__ import annotations

from alembic import op

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None

# The `english` configuration: stemming (build/building/builds) and stop words; bodies only, so
# edits (body rewritten) and deletes (body NULL) are indexed as they happen.
PG_COLUMN = ("ALTER TABLE messages ADD COLUMN search tsvector "
             "GENERATED ALWAYS AS (to_tsvector('english'::regconfig, coalesce(body, ''))) STORED")
PG_INDEX = "CREATE INDEX ix_messages_search ON messages USING gin (search)"

SQLITE = [
    "CREATE VIRTUAL TABLE messages_fts USING fts5(body, content='messages', content_rowid='id', "
    "tokenize='porter unicode61')",
    "CREATE TRIGGER messages_fts_insert AFTER INSERT ON messages WHEN new.body IS NOT NULL BEGIN "
    "INSERT INTO messages_fts(rowid, body) VALUES (new.id, new.body); END",
    "CREATE TRIGGER messages_fts_delete AFTER DELETE ON messages WHEN old.body IS NOT NULL BEGIN "
    "INSERT INTO messages_fts(messages_fts, rowid, body) VALUES ('delete', old.id, old.body); END",
    # One trigger, old out before new in (SQLite runs several triggers of one event in no promised order).
    "CREATE TRIGGER messages_fts_update AFTER UPDATE OF body ON messages BEGIN "
    "INSERT INTO messages_fts(messages_fts, rowid, body) SELECT 'delete', old.id, old.body WHERE old.body IS NOT NULL; "
    "INSERT INTO messages_fts(rowid, body) SELECT new.id, new.body WHERE new.body IS NOT NULL; END",
    "INSERT INTO messages_fts(rowid, body) SELECT id, body FROM messages WHERE body IS NOT NULL",
]


def upgrade() -> None:
    if op.get_context().dialect.name == "postgresql":
        op.execute(PG_COLUMN)
        op.execute(PG_INDEX)
        return
    for statement in SQLITE:
        op.execute(statement)


def downgrade() -> None:
    if op.get_context().dialect.name == "postgresql":
        op.execute("DROP INDEX ix_messages_search")
        op.execute("ALTER TABLE messages DROP COLUMN search")
        return
    for trigger in ("insert", "delete", "update"):
        op.execute(f"DROP TRIGGER messages_fts_{trigger}")
    op.execute("DROP TABLE messages_fts")
