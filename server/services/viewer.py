"""Who is asking, as the community areas (forum, feed, groups, events) see them, and the page of
results they answer with."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from server.auth import rbac

ROLE_LEVELS = {"bot": 0, "member": 1, "moderator": 2, "admin": 3}


@dataclass(frozen=True, slots=True)
class Viewer:
    """An HTTP principal or a websocket user: id, name, site role, and whether it is a bot."""

    user_id: int
    username: str
    role: str
    bot: bool = False

    @classmethod
    def of(cls, user: Any) -> Viewer:
        """From a Principal or a ConnUser (both carry id, name, role and kind)."""
        return cls(user.user_id, user.username, user.role, user.kind == "bot" or user.role == "bot")

    @property
    def level(self) -> int:
        """Orders roles for "this role or above" rules (a bot is below every member)."""
        return 0 if self.bot else ROLE_LEVELS.get(self.role, 0)

    @property
    def moderator(self) -> bool:
        return not self.bot and rbac.allowed(self.role, "community.moderate")


@dataclass(frozen=True, slots=True)
class Page:
    items: list[dict[str, Any]]
    next: str | None  # the cursor of the next page, None on the last

    def body(self) -> dict[str, Any]:
        return {"items": self.items, "next": self.next}
