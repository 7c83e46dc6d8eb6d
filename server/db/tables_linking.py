"""Game server API keys and link codes (issue 18)."""

from __future__ import annotations
