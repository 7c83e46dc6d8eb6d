"""Which HTTP limit a request counts against: `auth`, `write` or `read`.

One shared budget for everything locked members out of the API in normal use: a busy room's read
markers and the app's start-up reads used up the same quota as sign-in attempts. Limits are split
by what they protect instead (each with its own setting and counter per client):

- `auth`: signing in and changing credentials: every non-safe request under `/api/auth/` and every
  OAuth step. Tight, per client; failed passwords are also locked out per account and per IP in
  the database (server/auth/lockout.py).
- `write`: everything else that changes state (`POST`, `PUT`, `PATCH`, `DELETE` on `/api/`);
  social actions have their own per-action limits on top (`RATE_LIMIT_ACTIONS`).
- `read`: `GET`/`HEAD`/`OPTIONS` on `/api/`: a generous token bucket that a client's normal use
  (start-up, lists, history pages, opening every screen) cannot exhaust; it stops scrapers and loops.
"""

from __future__ import annotations

from typing import Literal

LimitClass = Literal["auth", "write", "read"]
CLASSES: tuple[LimitClass, ...] = ("auth", "write", "read")
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})


def limit_class(method: str, path: str) -> LimitClass:
    if path.startswith("/api/auth/oauth/") or (path.startswith("/api/auth/") and method not in SAFE_METHODS):
        return "auth"
    return "read" if method in SAFE_METHODS else "write"
