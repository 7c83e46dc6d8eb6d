"""Game servers and their live status (filled in by issue 18's status work)."""

from __future__ import annotations

from typing import Any


def attach(resources: Any, settings: Any) -> None:
    """Wire this area into the app's resources (called at the end of Resources.build)."""
