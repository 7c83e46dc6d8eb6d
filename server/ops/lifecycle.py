"""Process lifecycle state shared by readiness, the websocket hub and the drain on SIGTERM."""

from __future__ import annotations

import time
from dataclasses import dataclass, field


@dataclass
class Lifecycle:
    started_at: float = field(default_factory=time.time)
    draining: bool = False

    def start_draining(self) -> None:
        self.draining = True

    @property
    def uptime_seconds(self) -> float:
        return time.time() - self.started_at
