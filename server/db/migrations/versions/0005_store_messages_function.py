"""PostgreSQL: store a batch of chat messages in one statement (`vonix_store_messages`).

Why a function: the group commit (server/db/queries/message_batch.py) stores every batch of chat
messages; as separate statements that was six round trips (begin, nonces, lock, offsets, insert,
commit) and about a sixth of a busy replica's CPU. The function does it in one call, atomically.
SQLite runs in-process and keeps the same steps in Python.

Input: one array element per message, already free of repeats within the batch. Output: one row
per message that was stored or had been stored before (its nonce): `(pos, message_offset,
duplicate)`; a message whose channel no longer exists has no row.

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-25
"""

from __future__ import annotations

from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None

FUNCTION = """
CREATE OR REPLACE FUNCTION vonix_store_messages(
    p_channel bigint[], p_author bigint[], p_body text[], p_data text[], p_nonce text[], p_at timestamptz[])
RETURNS TABLE (pos integer, message_offset bigint, duplicate boolean)
LANGUAGE plpgsql AS $fn$
#variable_conflict use_column
BEGIN
    -- Channel rows in id order: two replicas committing overlapping batches cannot deadlock.
    PERFORM 1 FROM channels WHERE id = ANY(p_channel) ORDER BY id FOR UPDATE;
    RETURN QUERY
    WITH input AS (
        SELECT u.pos::integer AS pos, u.c, u.a, u.b, u.d, u.n, u.t
        FROM unnest(p_channel, p_author, p_body, p_data, p_nonce, p_at)
             WITH ORDINALITY AS u(c, a, b, d, n, t, pos)
    ), earlier AS (  -- a nonce this author already used: the first message's offset, nothing stored
        SELECT i.pos, m."offset" AS message_offset
        FROM input AS i JOIN messages AS m ON m.author_id = i.a AND m.nonce = i.n
        WHERE i.n IS NOT NULL AND m.nonce IS NOT NULL
    ), fresh AS (
        SELECT i.*, row_number() OVER (PARTITION BY i.c ORDER BY i.pos) AS rank
        FROM input AS i WHERE NOT EXISTS (SELECT 1 FROM earlier AS e WHERE e.pos = i.pos)
    ), bumped AS (
        UPDATE channels AS ch SET last_offset = ch.last_offset + f.cnt
        FROM (SELECT c, count(*) AS cnt FROM fresh GROUP BY c) AS f
        WHERE ch.id = f.c
        RETURNING ch.id, ch.last_offset, f.cnt
    ), placed AS (
        SELECT f.pos, f.c, f.a, f.b, f.d, f.n, f.t, b.last_offset - b.cnt + f.rank AS message_offset
        FROM fresh AS f JOIN bumped AS b ON b.id = f.c
    ), inserted AS (
        INSERT INTO messages (channel_id, "offset", author_id, body, data, nonce, created_at)
        SELECT p.c, p.message_offset, p.a, p.b, p.d::jsonb, p.n, p.t FROM placed AS p ORDER BY p.pos
        RETURNING 1
    )
    SELECT p.pos, p.message_offset, false FROM placed AS p
    UNION ALL
    SELECT e.pos, e.message_offset, true FROM earlier AS e;
END
$fn$
"""


def upgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.execute(FUNCTION)


def downgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.execute("DROP FUNCTION IF EXISTS vonix_store_messages(bigint[], bigint[], text[], text[], text[], "
                   "timestamptz[])")
