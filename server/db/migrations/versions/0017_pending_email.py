"""Separate an account's claimed email from the one it owns: `users.pending_email` (issue 20).

Registration used to write the typed address into `users.email`, whose unique index then answered
`email_taken` to anyone probing whether an address has an account. From this revision on, a new
account's address waits in `pending_email` (not unique: anyone may claim any address) until the
link mailed to it is opened; only then does it move into `users.email`, which stays unique and is
what signing in by email and password-reset mails use. Registering with an address another
account owns therefore succeeds like any other registration, and that owner gets a notice instead.

Existing rows are left as they are, unverified addresses included, because:
- each was claimed under the old unique rule, so no other account has a competing claim;
- members sign in and reset their password by them today: moving them to `pending_email` would cut
  a member who forgot their username off from both, with no way back until they confirm, while
  leaving them changes nothing about what anyone could do before;
- `email_verified_at` still says they were never confirmed: OAuth still refuses to link a provider
  identity to such an address, and `REQUIRE_VERIFIED_EMAIL` still applies to them.
Downgrading drops the column; pending addresses are lost (those accounts had no confirmed one).

Revision ID: 0017
Revises: 0016
Create Date: 2026-12-04
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0017"
down_revision = "0016"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("users", sa.Column("pending_email", sa.String(length=254), nullable=True))


def downgrade() -> None:
    # A plain ALTER TABLE … DROP COLUMN (SQLite 3.35+ has it): batch mode would copy the table and
    # lose its expression indexes (lower(username), lower(email)).
    op.drop_column("users", "pending_email")
