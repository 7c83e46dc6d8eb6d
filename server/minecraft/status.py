"""Game servers and their live status (docs/minecraft.md): the service on `resources.mc_status`.

- Admin CRUD of the server list (server/routes/servers.py validates; names unique whatever their
  case: 409 `server_name_taken`). A new server, or one whose address changed, gets a first look at
  once from the replica that saved it, instead of waiting for the next round.
- `snapshot()` / `one()`: the `ServerOut` shape of docs/minecraft.md, read from the database
  (the latest status lives on the row, so any replica answers whichever one polled) plus uptime
  from a per-replica cache (server/minecraft/history.py).
- `record()`: what the poller (server/minecraft/poller.py) found: one sample row, the status on
  the row, the favicon when it changed; `server_status` on `status:servers` only when something a
  reader sees changed (not latency alone).
- `game_event()`: a game chat bridge's join / leave / full list / gone, kept on the row
  (`exact_players`, under the row's write lock) so every replica sees the same exact list.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from typing import Any

import sqlalchemy as sa

from server.db.database import Database
from server.db.errors import UniqueViolation
from server.db.tables_minecraft import mc_servers, mc_status_samples
from server.db.types import utcnow
from server.errors import Conflict, NotFound
from server.minecraft.history import History, iso
from server.minecraft.ping import DEFAULT_PORTS, PingResult, favicon_hash
from server.minecraft.poller import Poller
from server.observability.logging import get_logger

log = get_logger("vonix.minecraft.status")

CHANNEL = "status:servers"
EVENTS = ("join", "leave", "players", "bridge_offline")
PLAYER_NAME_MAX = 32
EXACT_MAX = 1000
ADDRESS_FIELDS = ("host", "port", "edition")
_SHOWN = (mc_servers.c.id, mc_servers.c.name, mc_servers.c.description, mc_servers.c.host, mc_servers.c.port,
          mc_servers.c.edition, mc_servers.c.version, mc_servers.c.modpack, mc_servers.c.map_url,
          mc_servers.c.modpack_url, mc_servers.c.position, mc_servers.c.status, mc_servers.c.checked_at,
          mc_servers.c.exact_players)


def address(host: str, port: int, edition: str) -> str:
    """What a player types: the host, plus `:port` when it is not the edition's default."""
    if port == DEFAULT_PORTS.get(edition):
        return host
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def _player(name: Any) -> str | None:
    if not isinstance(name, str):
        return None
    name = name.strip()
    if not 0 < len(name) <= PLAYER_NAME_MAX or any(ord(c) < 32 or 0x7F <= ord(c) < 0xA0 for c in name):
        return None
    return name


def visible(status: dict[str, Any] | None) -> Any:
    """What a reader sees of a status: everything but the latency and when it was checked."""
    if status is None:
        return None
    return {key: value for key, value in status.items() if key not in ("latency_ms", "checked_at")}


class StatusService:
    def __init__(self, resources: Any, settings: Any, clock: Callable[[], datetime] = utcnow) -> None:
        self.resources = resources
        self.db: Database = resources.db
        self.clock = clock
        self.history = History(self.db, clock)
        self.poller = Poller(self, resources, float(settings.mc_status_interval), float(settings.mc_status_timeout))

    # --- reads -----------------------------------------------------------------------------------
    async def rows(self) -> list[Any]:
        return await self.db.fetch_all("mc_status.rows", sa.select(*_SHOWN).order_by(
            mc_servers.c.position, mc_servers.c.name, mc_servers.c.id))

    async def _row(self, server_id: int) -> Any:
        if not 0 < server_id < 2**62:
            return None
        return await self.db.fetch_one("mc_status.row", sa.select(*_SHOWN).where(mc_servers.c.id == server_id))

    def shape(self, row: Any, uptime: dict[str, float | None] | None = None) -> dict[str, Any]:
        return {
            "id": row["id"], "name": row["name"], "description": row["description"], "host": row["host"],
            "port": row["port"], "address": address(row["host"], row["port"], row["edition"]),
            "edition": row["edition"], "version": row["version"], "modpack": row["modpack"],
            "map_url": row["map_url"], "modpack_url": row["modpack_url"], "position": row["position"],
            "status": self._status(row),
            "uptime": uptime or {"24h": None, "7d": None},
        }

    @staticmethod
    def _status(row: Any) -> dict[str, Any] | None:
        stored, exact = row["status"], row["exact_players"]
        if stored is None and exact is None:
            return None
        status = dict(stored or {"online": True, "players": {"online": 0, "max": 0, "sample": []}, "version": None,
                                 "motd_html": "", "motd_text": "", "latency_ms": None, "favicon_hash": None,
                                 "reason": None})
        players = dict(status["players"])
        players["exact"] = exact is not None
        if exact is not None:  # a bridge reports from inside the game: the server is up, the list exact
            players.update(online=len(exact), sample=list(exact))
            status.update(online=True, reason=None)
        status["players"] = players
        hashed = status.pop("favicon_hash", None)
        status["favicon_url"] = f"/api/servers/{row['id']}/favicon?v={hashed}" if hashed else None
        checked = row["checked_at"]
        status["checked_at"] = iso(checked) if checked is not None else None
        return status

    async def snapshot(self) -> list[dict[str, Any]]:
        """Every server as `ServerOut`, by position then name (what `GET /api/servers` answers)."""
        rows = await self.rows()
        uptimes = await self.history.uptimes() if rows else {}
        return [self.shape(row, uptimes.get(int(row["id"]))) for row in rows]

    async def one(self, server_id: int) -> dict[str, Any] | None:
        row = await self._row(server_id)
        if row is None:
            return None
        return self.shape(row, (await self.history.uptimes()).get(server_id))

    async def get(self, server_id: int) -> dict[str, Any] | None:
        """One server (`ServerOut`), or None: for the plugin API's key scoping."""
        return await self.one(server_id)

    async def favicon(self, server_id: int) -> tuple[bytes, str] | None:
        if not 0 < server_id < 2**62:
            return None
        row = await self.db.fetch_one("mc_status.favicon", sa.select(mc_servers.c.favicon, mc_servers.c.favicon_hash)
                                      .where(mc_servers.c.id == server_id))
        if row is None or row["favicon"] is None:
            return None
        return bytes(row["favicon"]), str(row["favicon_hash"])

    async def chart(self, server_id: int, range_: str) -> dict[str, Any]:
        if await self._row(server_id) is None:
            raise NotFound("No such server.")
        return await self.history.chart(server_id, range_)

    # --- admin writes ----------------------------------------------------------------------------
    async def create(self, fields: dict[str, Any]) -> dict[str, Any]:
        now = self.clock()
        if fields.get("port") is None:
            fields["port"] = DEFAULT_PORTS[fields.get("edition", "java")]
        if fields.get("position") is None:
            last = await self.db.fetch_val("mc_status.last_position", sa.select(sa.func.max(mc_servers.c.position)))
            fields["position"] = int(last) + 1 if last is not None else 0
        try:
            server_id = int(await self.db.fetch_val("mc_status.insert", mc_servers.insert().values(
                **fields, created_at=now, updated_at=now).returning(mc_servers.c.id)))
        except UniqueViolation:
            raise Conflict("A server with this name exists.", code="server_name_taken") from None
        server = await self._announce_update(server_id)
        self._first_look(server_id)
        return server

    async def update(self, server_id: int, changes: dict[str, Any]) -> dict[str, Any]:
        row = await self._row(server_id)
        if row is None:
            raise NotFound("No such server.")
        if "edition" in changes and "port" not in changes and row["port"] == DEFAULT_PORTS[row["edition"]]:
            changes["port"] = DEFAULT_PORTS[changes["edition"]]  # the default follows the edition
        if "port" in changes and changes["port"] is None:
            changes["port"] = DEFAULT_PORTS[changes.get("edition", row["edition"])]
        changed = {key: value for key, value in changes.items() if row[key] != value}
        if not changed:
            server = await self.one(server_id)
            if server is None:  # deleted meanwhile
                raise NotFound("No such server.")
            return server
        moved = any(key in changed for key in ADDRESS_FIELDS)
        if moved:  # another server now: its old status and bridge list no longer apply
            changed.update(status=None, checked_at=None, exact_players=None, favicon=None, favicon_hash=None)
        try:
            await self.db.execute("mc_status.update", mc_servers.update().where(mc_servers.c.id == server_id).values(
                **changed, updated_at=self.clock()))
        except UniqueViolation:
            raise Conflict("A server with this name exists.", code="server_name_taken") from None
        server = await self._announce_update(server_id)
        if moved:
            self._first_look(server_id)
        return server

    async def reorder(self, ids: list[int]) -> list[dict[str, Any]]:
        """Positions 0, 1, 2… in the order given (ids not listed keep theirs, after them)."""
        rows = {int(row["id"]): row for row in await self.rows()}
        missing = [server_id for server_id in ids if server_id not in rows]
        if missing:
            raise NotFound("No such server.", details={"ids": missing})
        rest = [server_id for server_id in rows if server_id not in ids]
        async with self.db.transaction():
            for position, server_id in enumerate([*ids, *rest]):
                if rows[server_id]["position"] != position:
                    await self.db.execute("mc_status.position", mc_servers.update().where(
                        mc_servers.c.id == server_id).values(position=position, updated_at=self.clock()))
        for position, server_id in enumerate([*ids, *rest]):
            if rows[server_id]["position"] != position:
                await self._announce_update(server_id)
        return await self.snapshot()

    async def delete(self, server_id: int) -> None:
        if self.resources.mc_link is not None and 0 < server_id < 2**62:
            # its plugin keys die with it, and a bridge signed in with one is closed on every replica
            await self.resources.mc_link.close_server(server_id)
        gone = await self.db.fetch_val("mc_status.delete", mc_servers.delete().where(
            mc_servers.c.id == server_id).returning(mc_servers.c.id)) if 0 < server_id < 2**62 else None
        if gone is None:
            raise NotFound("No such server.")
        self.history.forget()
        await self.publish({"type": "server_removed", "id": server_id})

    async def _announce_update(self, server_id: int) -> dict[str, Any]:
        server = await self.one(server_id)
        assert server is not None
        await self.publish({"type": "server_updated", "server": server})
        return server

    def _first_look(self, server_id: int) -> None:
        self.resources.spawn(self._look(server_id), f"mc-first-look:{server_id}")

    async def _look(self, server_id: int) -> None:
        row = await self._row(server_id)
        if row is not None:
            await self.poller.poll(row)

    # --- what the poller found -------------------------------------------------------------------
    async def record(self, server_id: int, result: PingResult) -> None:
        """Store the poll (a sample, the row's status, the favicon when new); publish when a reader
        would see a difference."""
        now = self.clock()
        before = await self.db.fetch_one("mc_status.before", sa.select(
            mc_servers.c.status, mc_servers.c.favicon_hash).where(mc_servers.c.id == server_id))
        if before is None:  # deleted meanwhile
            return
        await self.db.execute("mc_status.sample", mc_status_samples.insert().values(
            server_id=server_id, at=now, online=result.online, players=result.players_online,
            max=result.players_max, latency_ms=result.latency_ms, reason=result.reason))
        updates: dict[str, Any] = {}
        icon = before["favicon_hash"]
        if result.online:
            icon = favicon_hash(result.favicon) if result.favicon is not None else None
            if icon != before["favicon_hash"]:
                updates.update(favicon=result.favicon, favicon_hash=icon)
        status = {
            "online": result.online,
            "players": {"online": result.players_online, "max": result.players_max, "sample": result.sample},
            "version": result.version, "motd_html": result.motd_html, "motd_text": result.motd_text,
            "latency_ms": result.latency_ms, "favicon_hash": icon, "reason": result.reason,
        }
        await self.db.execute("mc_status.store", mc_servers.update().where(mc_servers.c.id == server_id).values(
            status=status, checked_at=now, **updates))
        if visible(before["status"]) != visible(status):
            await self._announce_status(server_id)

    async def _announce_status(self, server_id: int) -> None:
        server = await self.one(server_id)
        if server is not None:
            await self.publish({"type": "server_status", "server": server})

    async def publish(self, data: dict[str, Any]) -> None:
        """On `status:servers`; a broker outage is logged, never raised into the poller or a request."""
        try:
            await self.resources.node.publish(CHANNEL, data)
        except Exception as exc:
            log.warning("mc_status_publish_failed", type=data.get("type"), error=exc.__class__.__name__)

    # --- a game chat bridge's events -------------------------------------------------------------
    async def game_event(self, server_id: int, event: str, player: str | None = None,
                         players: list[str] | None = None) -> None:
        """`join` / `leave` one player, `players` the full list, `bridge_offline` back to polls."""
        if event not in EVENTS:
            raise ValueError(f"unknown game event {event!r}")
        async with self.db.transaction():
            # a no-op UPDATE first: the row's write lock, so concurrent events queue up
            locked = await self.db.fetch_one("mc_status.lock_players", mc_servers.update().where(
                mc_servers.c.id == server_id).values(position=mc_servers.c.position).returning(
                mc_servers.c.exact_players))
            if locked is None:
                log.info("mc_game_event_unknown_server", server_id=server_id, game_event=event)
                return
            before = list(locked["exact_players"]) if locked["exact_players"] is not None else None
            after = self._apply(before, event, player, players)
            if after != before:
                await self.db.execute("mc_status.set_players", mc_servers.update().where(
                    mc_servers.c.id == server_id).values(exact_players=after))
        if after != before:
            await self._announce_status(server_id)

    @staticmethod
    def _apply(before: list[str] | None, event: str, player: str | None,
               players: list[str] | None) -> list[str] | None:
        if event == "bridge_offline":
            return None
        if event == "players":
            names: list[str] = []
            for name in (_player(item) for item in (players or [])[:EXACT_MAX]):
                if name is not None and name not in names:
                    names.append(name)
            return names
        name = _player(player)
        if name is None:
            return before
        current = list(before or [])
        if event == "join":
            if name not in current and len(current) < EXACT_MAX:
                return [*current, name]
            return current
        if before is None:  # a leave before any list: nothing exact to take them off
            return None
        return [item for item in current if item != name]

    # --- the poller ------------------------------------------------------------------------------
    async def run(self) -> None:
        """The poller loop (every replica runs it; the lock picks the one that polls)."""
        await self.poller.run()

    async def poll_now(self) -> int:
        """One round now on this replica, without the lock (tests and operators); servers polled."""
        return await self.poller.round()


def attach(resources: Any, settings: Any) -> None:
    """Wire this area into the app's resources (called at the end of Resources.build)."""
    resources.mc_status = StatusService(resources, settings)
