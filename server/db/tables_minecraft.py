"""Game servers and their status history (issue 18)."""

from __future__ import annotations
