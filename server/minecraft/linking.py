"""Game server API keys, link codes and linked accounts (filled in by issue 18's linking work)."""

from __future__ import annotations

from typing import Any


def attach(resources: Any, settings: Any) -> None:
    """Wire this area into the app's resources (called at the end of Resources.build)."""
