"""Game chat bridge: stands in for a Minecraft server plugin, using the Vonix bot client
(realtime/client.py). Read docs/plugins.md first.

    # an admin issues a key for the game server (Admin → Servers → Keys, or the API):
    #   POST /api/admin/servers/{id}/keys {"name": "bridge"}  -> {"key": "vxs_..."}  (shown once)
    VONIX_URL=https://vonix.example VONIX_SERVER_KEY=vxs_... \\
        python examples/minecraft_bridge.py --log /srv/minecraft/logs/latest.log | ./send-to-console

Environment: VONIX_URL (default http://127.0.0.1:8000), VONIX_SERVER_KEY (required; a `vxs_` key
signs in as the game server's bot), VONIX_ROOM (default room:general), VONIX_BACKOFF ("base,cap"
seconds, default "0.5,30").

Game -> Vonix. Lines come from the game server's log (`--log FILE`, followed like `tail -F`) or
from stdin, in either form:
- vanilla/Paper log lines: `[12:00:00] [Server thread/INFO]: <Steve> hello`, `Steve joined the
  game`, `Steve left the game`, death messages (`Steve was slain by Zombie`, `Steve fell from a
  high place`, ...), `Steve has made the advancement [Stone Age]`, and the answer of `/list`
  (`There are 2 of a max of 20 players online: Steve, Alex`);
- a line protocol (for plugins that pipe events in): `chat <player> <text>`, `join <player>`,
  `leave <player>`, `death <player> <text>`, `advancement <player> <text>`,
  `players <name>,<name>,...` (the full online list).
Chat is published as `{"text", "via": {"source": "game", "name": "Steve"}}` (shown as
"[game] Steve" on the site); events add `"system": "join"|"leave"|"death"|"advancement"` (a muted
event line). Join and leave also keep the server's status exact. On every (re)connect the bridge
prints `list` for the console (the game's answer comes back through the log) and sends the full
online list it knows (`PUT /api/plugin/players`).

Vonix -> game. Every room message from someone else is printed on stdout as a `tellraw` command
for the server console (JSON built with json.dumps: nothing typed on the site can break out of
it). The bridge's own messages come back on the subscription and are skipped (no loops).

Reconnects: the client reconnects by itself and resubscribes with `since`, so room messages posted
while it was away are printed too (once). Lines read from the game while it is away wait in a queue
and are published after the reconnect, each with a nonce, so a retried publish is stored once.
Status lines go to stderr (`bridge: ...`).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import re
import signal
import sys
import time
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import httpx

from realtime.client import Closed, Connected, Disconnected, Gap, Message, VonixClient, VonixError

PLAYER = r"([A-Za-z0-9_]{3,16})"
LOG_PREFIX = re.compile(r"^\[[^\]]*\] \[[^\]]*\]: ")  # [12:00:00] [Server thread/INFO]:
CHAT = re.compile(rf"^(?:\[Not Secure\] )?<{PLAYER}> (.+)$")
JOINED = re.compile(rf"^{PLAYER} joined the game$")
LEFT = re.compile(rf"^{PLAYER} left the game$")
ADVANCEMENT = re.compile(rf"^{PLAYER} has (?:made the advancement|completed the challenge|reached the goal) \[(.+)\]$")
LIST = re.compile(r"^There are \d+ of a max(?: of)? \d+ players online:\s*(.*)$")
DEATHS = ("was ", "died", "drowned", "blew up", "fell ", "hit the ground", "burned", "went up in flames",
          "went off with a bang", "walked into", "starved", "suffocated", "withered away", "froze to death",
          "experienced kinetic energy", "tried to swim in lava", "discovered the floor was lava", "didn't want to live",
          "left the confines of this world", "was squished", "was killed", "was slain", "was shot", "was blown up")
DEATH = re.compile(rf"^{PLAYER} (.+)$")
PROTOCOL = re.compile(r"^(chat|join|leave|death|advancement|players)(?:\s+(.*))?$")
NAME = re.compile(r"[A-Za-z0-9_]{3,16}")
SOURCES = {"game": "game", "discord": "discord"}


def say(text: str) -> None:
    print(f"bridge: {text}", file=sys.stderr, flush=True)


@dataclass(frozen=True)
class GameEvent:
    kind: str  # chat | join | leave | death | advancement | players
    player: str = ""
    text: str = ""
    players: tuple[str, ...] = ()


def parse(line: str) -> GameEvent | None:
    """One line of the log or of the line protocol -> an event; None for anything else."""
    line = line.rstrip("\r\n")
    match = PROTOCOL.match(line)
    if match is not None:
        kind, rest = match[1], (match[2] or "").strip()
        if kind == "players":
            return GameEvent("players", players=tuple(n for n in re.split(r"[,\s]+", rest) if NAME.fullmatch(n)))
        player, _, text = rest.partition(" ")
        if not NAME.fullmatch(player):
            return None
        if kind == "chat":
            return GameEvent("chat", player, text) if text.strip() else None
        default = {"join": f"{player} joined the game", "leave": f"{player} left the game",
                   "death": f"{player} died", "advancement": f"{player} made an advancement"}[kind]
        text = text.strip()
        if kind in ("death", "advancement") and text and not text.startswith(player):
            text = f"{player} {text}"
        return GameEvent(kind, player, text or default)
    line = LOG_PREFIX.sub("", line, count=1)
    for pattern, kind in ((CHAT, "chat"), (JOINED, "join"), (LEFT, "leave")):
        match = pattern.match(line)
        if match is not None:
            return GameEvent(kind, match[1], match[2] if kind == "chat" else line)
    match = ADVANCEMENT.match(line)
    if match is not None:
        return GameEvent("advancement", match[1], line)
    match = LIST.match(line)
    if match is not None:
        return GameEvent("players", players=tuple(n for n in re.split(r"[,\s]+", match[1]) if NAME.fullmatch(n)))
    match = DEATH.match(line)
    if match is not None and match[2].startswith(DEATHS):
        return GameEvent("death", match[1], line)
    return None


def message_data(event: GameEvent) -> dict[str, Any]:
    data: dict[str, Any] = {"text": event.text[:4000], "via": {"source": "game", "name": event.player}}
    if event.kind != "chat":
        data["system"] = event.kind
    return data


def tellraw(message: Message) -> str | None:
    """A room message -> one console command; None for what the game should not see."""
    data = message.data
    if message.event is not None or not isinstance(data, dict) or not isinstance(data.get("text"), str):
        return None
    via = data.get("via") if isinstance(data.get("via"), dict) else None
    sender = (message.sender or {}).get("username") or "Vonix"
    name = f"[{SOURCES.get(via.get('source'), 'bot')}] {via.get('name')}" if via else str(sender)
    if data.get("system"):
        parts = [{"text": data["text"], "color": "gray", "italic": True}]
    else:
        parts = [{"text": "[Vonix] ", "color": "aqua"}, {"text": name, "color": "white"},
                 {"text": ": " + data["text"]}]
    return "tellraw @a " + json.dumps(parts, ensure_ascii=False, separators=(",", ":"))


async def stdin_lines() -> AsyncIterator[str]:
    loop = asyncio.get_running_loop()
    reader = asyncio.StreamReader()
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)
    while True:
        raw = await reader.readline()
        if not raw:
            return
        yield raw.decode(errors="replace")


async def follow(path: str) -> AsyncIterator[str]:
    """`tail -F`: from the end of the file, then across rotations (a new file is read from its start)."""
    handle = None
    inode = None
    rotated = False
    while True:
        if handle is None:
            try:
                handle = open(path, encoding="utf-8", errors="replace")  # noqa: ASYNC230 (a local file: instant)
            except FileNotFoundError:
                await asyncio.sleep(1)
                rotated = True
                continue
            inode = os.fstat(handle.fileno()).st_ino
            if not rotated:
                handle.seek(0, os.SEEK_END)  # what was logged before the bridge started is not news
        line = handle.readline()
        if line:
            yield line
            continue
        await asyncio.sleep(0.25)
        try:
            stat = os.stat(path)
        except FileNotFoundError:
            continue
        if stat.st_ino != inode or stat.st_size < handle.tell():
            handle.close()
            handle, rotated = None, True


class Bridge:
    def __init__(self, url: str, key: str, room: str, backoff: tuple[float, float]) -> None:
        self.url, self.key, self.room = url, key, room
        self.client = VonixClient(url, key, backoff=backoff)
        self.online: list[str] = []
        self.known = False  # the online list is complete (the game answered `list` or said `players`)
        self.outbox: asyncio.Queue[GameEvent] = asyncio.Queue()
        self.run_id = uuid.uuid4().hex[:12]
        self.sequence = 0
        self.background: set[asyncio.Task[None]] = set()
        self.http = httpx.AsyncClient(base_url=url, timeout=10, headers={"Authorization": f"Bearer {key}"})

    def spawn(self, coroutine: Any) -> None:
        task = asyncio.get_running_loop().create_task(coroutine)
        self.background.add(task)
        task.add_done_callback(self.background.discard)

    async def report_players(self) -> None:
        """The full online list (on every (re)connect and on `/list`): the status becomes exact."""
        for _ in range(5):
            try:
                response = await self.http.put("/api/plugin/players", json={"players": self.online})
                if response.status_code < 500:
                    if response.status_code != 200:
                        say(f"players refused: {response.status_code} {response.text[:200]}")
                    return
            except httpx.HTTPError as exc:
                say(f"players not sent ({exc.__class__.__name__}); retrying")
            await asyncio.sleep(1)

    def read(self, event: GameEvent) -> None:
        """A game event: track who is online, queue the message for the room."""
        if event.kind == "players":
            self.online = list(dict.fromkeys(event.players))
            self.known = True
            self.spawn(self.report_players())
            return
        if event.kind == "join" and event.player not in self.online:
            self.online.append(event.player)
        elif event.kind == "leave" and event.player in self.online:
            self.online.remove(event.player)
        self.outbox.put_nowait(event)

    async def send_loop(self) -> None:
        """Publishes in order; waits out disconnects (the nonce makes a resent publish count once)."""
        while True:
            event = await self.outbox.get()
            self.sequence += 1
            nonce = f"mc-{self.run_id}-{self.sequence}"
            while True:
                try:
                    offset = await self.client.publish(self.room, message_data(event), nonce=nonce)
                except Closed:
                    raise
                except VonixError as exc:
                    if not exc.temporary:
                        say(f"refused {event.kind} of {event.player}: {exc}")
                        break
                    await asyncio.sleep(exc.retry_after or 0.5)
                    continue
                say(f"sent {event.kind} of {event.player} as #{offset}")
                break
            self.outbox.task_done()

    async def receive_loop(self) -> None:
        async for event in self.client:
            if isinstance(event, Message):
                me = (self.client.user or {}).get("id")
                if event.channel != self.room or (event.sender is not None and event.sender.get("id") == me):
                    continue  # our own echo: never relayed back into the game
                command = tellraw(event)
                if command is not None:
                    print(command, flush=True)
                    say(f"relayed #{event.offset}{' (recovered)' if event.recovered else ''}")
            elif isinstance(event, Connected):
                say(f"connected as {event.user.get('username')} (connection {self.client.connections})")
                print("list", flush=True)  # ask the game who is online: its answer is read like any line
                if self.known:
                    self.spawn(self.report_players())
            elif isinstance(event, Disconnected):
                say(f"disconnected: {event.code} {event.reason}; reconnecting in {event.retry_in} s")
            elif isinstance(event, Gap):
                say(f"gap in {event.channel}: messages after #{event.since} up to #{event.offset} may be missing")

    async def read_lines(self, lines: AsyncIterator[str]) -> None:
        async for line in lines:
            event = parse(line)
            if event is not None:
                self.read(event)
        say("input ended")
        await asyncio.wait_for(self.outbox.join(), 30)  # what was read is published before we stop

    async def run(self, lines: AsyncIterator[str]) -> None:
        await self.client.connect()
        await self.client.subscribe(self.room)
        say(f"subscribed to {self.room}")
        tasks = {asyncio.create_task(self.send_loop()), asyncio.create_task(self.receive_loop()),
                 asyncio.create_task(self.read_lines(lines))}
        try:
            done, _ = await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
            for task in done:
                task.result()  # the client stopped (e.g. the key was revoked): raise why
        finally:
            for task in tasks:
                task.cancel()
            try:
                await self.http.delete("/api/plugin/players")  # the status goes back to the server's samples
            except httpx.HTTPError:
                pass
            await self.http.aclose()
            await self.client.close()


def main() -> int:
    parser = argparse.ArgumentParser(description="Relay a Minecraft server's chat and a Vonix room both ways.")
    parser.add_argument("--log", help="follow this server log (default: read lines on stdin)")
    args = parser.parse_args()
    key = os.environ.get("VONIX_SERVER_KEY")
    if not key:
        print("minecraft_bridge: set VONIX_SERVER_KEY (an admin issues one per game server)", file=sys.stderr)
        return 2
    url = os.environ.get("VONIX_URL", "http://127.0.0.1:8000")
    room = os.environ.get("VONIX_ROOM", "room:general")
    if not room.startswith("room:"):
        room = f"room:{room}"
    base, cap = (float(x) for x in os.environ.get("VONIX_BACKOFF", "0.5,30").split(","))

    async def guarded() -> int:
        task = asyncio.current_task()
        assert task is not None
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, task.cancel)
        bridge = Bridge(url, key, room, (base, cap))
        started = time.monotonic()
        try:
            await bridge.run(follow(args.log) if args.log else stdin_lines())
        except asyncio.CancelledError:
            say("stopped")
            return 0
        except VonixError as exc:
            say(f"stopped after {time.monotonic() - started:.0f} s: {exc}")
            return 1
        return 0

    return asyncio.run(guarded())


if __name__ == "__main__":
    sys.exit(main())
