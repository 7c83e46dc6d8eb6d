"""What the persistence hook reports once a message has committed (no I/O, no heavy imports)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True, slots=True)
class MessageStored:
    channel: str  # "room:general" | "dm:3:7"
    channel_id: int
    channel_kind: str  # room | private_room | dm | thread
    offset: int
    author_id: int | None
    author_name: str | None
    author_kind: str | None  # user | bot
    data: Any

    @property
    def text(self) -> str:
        value = self.data.get("text") if isinstance(self.data, dict) else None
        return value if isinstance(value, str) else ""

    @property
    def reply_to(self) -> int | None:
        value = self.data.get("reply_to") if isinstance(self.data, dict) else None
        return value if isinstance(value, int) and not isinstance(value, bool) and value > 0 else None
