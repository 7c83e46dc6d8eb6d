"""The chaos schedule, scaled to the run's duration D (seconds from the moment publishing starts):

| when        | event                                                                               |
| ----------- | ----------------------------------------------------------------------------------- |
| 0.15 D      | warm-up ends: the RSS and fd baselines are read                                     |
| 0.20 D      | `kill -9` replica R1; started again max(3 s, 0.03 D) later (empty: new clients only) |
| 0.40 D      | SIGKILL the Redis master owning the most rooms' slots; its replica is promoted;     |
|             | started again max(3 s, 0.02 D) after the promotion, it rejoins as a replica          |
| 0.60 D      | PostgreSQL stopped (fast), down max(3 s, 0.01 D), started again on its data and port |
| 0.80 D      | SIGTERM replica R2 (drain: 1012 over DRAIN_SECONDS / 2), started again once it exits |
| D           | publishing stops; every pending publish is retried until acknowledged; the end      |

Why R1 and R2 and never R3: R3 runs the whole soak, so its RSS from the end of the warm-up to the
end is a growth figure with nothing restarted in between (restarted replicas are shown, not judged:
after a restart they hold a different number of connections). Why events are 0.2 D apart: each
one must be over (clients back, cluster ok) before the next, so the report can tell which event
caused what; at D = 60 s that leaves 12 s per event.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from bench.soak.stack import Node, Stack


@dataclass
class Event:
    name: str
    at: float  # seconds after the start of publishing (planned)
    started: float = 0.0  # Unix time
    ended: float = 0.0
    detail: dict[str, Any] = field(default_factory=dict)
    error: str | None = None


@dataclass
class Plan:
    duration: float

    @property
    def warmup(self) -> float:
        return 0.15 * self.duration

    def events(self) -> list[tuple[str, float]]:
        d = self.duration
        return [("kill -9 R1", 0.2 * d), ("Redis master failover", 0.4 * d), ("PostgreSQL restart", 0.6 * d),
                ("SIGTERM R2 (drain)", 0.8 * d)]


def run_event(stack: Stack, name: str, duration: float, on_restart: Callable[[Node], None]) -> dict[str, Any]:
    """Carry out one event (blocking: the soak runs it in a thread). `on_restart` reads a restarted
    replica's idle resources at once (its fd baseline)."""
    r1, r2 = stack.nodes[0], stack.nodes[1]
    if name.startswith("kill -9"):
        stack.kill_replica(r1)
        down = max(3.0, 0.03 * duration)
        time.sleep(down)
        stack.restart_replica(r1)
        on_restart(r1)
        return {"down_s": down}
    if name.startswith("Redis"):
        master, rooms = stack.busiest_master()
        detail = stack.fail_over(master, rejoin_after=max(3.0, 0.02 * duration))
        return {"master_port": master.port, "rooms": rooms, **detail}
    if name.startswith("PostgreSQL"):
        return {"down_s": stack.restart_postgres(max(3.0, 0.01 * duration))}
    if name.startswith("SIGTERM"):
        drained = stack.drain_replica(r2)
        stack.restart_replica(r2)
        on_restart(r2)
        return {"exit_s": drained}
    raise ValueError(name)
