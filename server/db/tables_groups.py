"""Tables of the community's groups (registered on the one metadata of server/db/tables.py)."""

from __future__ import annotations

import sqlalchemy as sa  # noqa: F401

from server.db.tables import metadata  # noqa: F401
