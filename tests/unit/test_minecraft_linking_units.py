"""Small pure parts of issue 18's linking and game bridge: UUIDs and codes normalised, the bot's
name derived from the server's, and the example bridge's reading of log lines, the line protocol
and its `tellraw` output (JSON, so nothing from the site breaks out of it)."""

from __future__ import annotations

import json

from examples.minecraft_bridge import GameEvent, message_data, parse, tellraw
from realtime.client import Message
from server.minecraft.keys import bot_name
from server.minecraft.linking import CODE_ALPHABET, new_code, normalise_code, normalise_uuid


def test_uuids_are_normalised_or_refused() -> None:
    dashed = "069a79f4-44e9-4726-a5be-fca90e38aaf5"
    assert normalise_uuid(dashed.upper()) == dashed
    assert normalise_uuid(dashed.replace("-", "")) == dashed
    for bad in ("", "069a79f4", "x" * 32, dashed + "0", "069a79f4-44e9-4726-a5be-fca90e38aaf"):
        assert normalise_uuid(bad) is None


def test_codes_avoid_look_alikes_and_read_loosely() -> None:
    assert not set("01OIL") & set(CODE_ALPHABET)
    codes = {new_code() for _ in range(200)}
    assert all(len(c) == 6 and set(c) <= set(CODE_ALPHABET) for c in codes) and len(codes) > 190
    assert normalise_code(" k7q-2xm ") == "K7Q2XM"


def test_bot_names_fit_usernames() -> None:
    assert bot_name("Survival") == "Survival_game"
    assert bot_name("My Server! (1.21)") == "My_Server_1_21_game"
    assert bot_name("§§§") == "game_server"
    assert len(bot_name("x" * 100)) <= 32


def test_log_lines_and_the_line_protocol() -> None:
    prefix = "[12:00:00] [Server thread/INFO]: "
    assert parse(prefix + "<Steve> hi <there>") == GameEvent("chat", "Steve", "hi <there>")
    assert parse(prefix + "[Not Secure] <Alex> yo") == GameEvent("chat", "Alex", "yo")
    assert parse(prefix + "Steve joined the game") == GameEvent("join", "Steve", "Steve joined the game")
    assert parse("Steve left the game") == GameEvent("leave", "Steve", "Steve left the game")
    assert parse(prefix + "Steve was slain by Zombie") == GameEvent("death", "Steve", "Steve was slain by Zombie")
    assert parse("Steve fell from a high place").kind == "death"  # type: ignore[union-attr]
    assert parse("Steve has made the advancement [Stone Age]").kind == "advancement"  # type: ignore[union-attr]
    assert parse("There are 2 of a max of 20 players online: Steve, Alex") == \
        GameEvent("players", players=("Steve", "Alex"))
    assert parse("chat Steve hello world") == GameEvent("chat", "Steve", "hello world")
    assert parse("death Steve") == GameEvent("death", "Steve", "Steve died")
    assert parse("players") == GameEvent("players")
    for nothing in ("Steve says hi", "chat St hi", "chat Steve ", prefix + "Starting minecraft server"):
        assert parse(nothing) is None


def test_messages_and_tellraw() -> None:
    assert message_data(GameEvent("join", "Steve", "Steve joined the game")) == \
        {"text": "Steve joined the game", "via": {"source": "game", "name": "Steve"}, "system": "join"}
    member = Message("room:general", 5, "e", {"text": 'x"}] ,{"text":"@a'}, {"id": 2, "username": "alex"}, 0.0)
    line = tellraw(member)
    assert line is not None and line.startswith("tellraw @a ")
    parts = json.loads(line.removeprefix("tellraw @a "))
    assert [p["text"] for p in parts] == ["[Vonix] ", "alex", ': x"}] ,{"text":"@a']
    relayed = Message("room:general", 6, "e", {"text": "hey", "via": {"source": "discord", "name": "Sam"}},
                      {"id": 9, "username": "discord_bot"}, 0.0)
    assert json.loads(tellraw(relayed).removeprefix("tellraw @a "))[1]["text"] == "[discord] Sam"  # type: ignore[union-attr]
    edit = Message("room:general", 7, "e", {"type": "edit", "target": 5, "text": "x"}, None, 0.0)
    assert tellraw(edit) is None
