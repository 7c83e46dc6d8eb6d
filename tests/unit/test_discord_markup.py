"""Text crossing the Discord bridge (server/bridges/markup.py)."""

from __future__ import annotations

from server.bridges import markup
from server.bridges.discord import BridgeConfig
from tests.conftest import make_settings

ZW = markup.ZWSP


def test_vonix_text_cannot_format_or_ping_on_discord() -> None:
    assert markup.to_discord("**bold** _it_ ~~s~~ `code` ||spoiler|| > quote") == (
        "\\*\\*bold\\*\\* \\_it\\_ \\~\\~s\\~\\~ \\`code\\` \\|\\|spoiler\\|\\| \\> quote")
    assert markup.to_discord("@everyone and @here and @Everyone") == \
        f"@{ZW}everyone and @{ZW}here and @{ZW}Everyone"
    assert markup.to_discord("<@123> <@&9> <#5> <t:0:R>") == "\\<@123\\> \\<@&9\\> \\<\\#5\\> \\<t\\:0\\:R\\>"
    assert markup.to_discord("[click](https://evil.test)") == "\\[click\\]\\(https://evil.test)"
    assert markup.to_discord("# heading\n- item") == "\\# heading\n\\- item"


def test_urls_are_left_linkable() -> None:
    assert markup.to_discord("see https://x.test/a_b*c and _this_") == "see https://x.test/a_b*c and \\_this\\_"


def test_vonix_mentions_become_display_names_escaped() -> None:
    names = {"bob": "Bob *the* Builder"}
    assert markup.to_discord("hi @bob and @carol", names) == "hi @Bob \\*the\\* Builder and @carol"
    assert markup.to_discord("mail a@bob.test") == "mail a@bob.test"
    assert markup.mentioned_usernames("@Bob @bob @carol @everyone x@dave") == ["bob", "carol"]


def test_long_text_is_cut_to_discords_limit_without_a_dangling_escape() -> None:
    text = markup.to_discord("a" * 1998 + "**")
    assert len(text) <= markup.DISCORD_MAX and text.endswith("…") and not text.endswith("\\…")
    assert markup.cut("abc", 3) == "abc"


def test_webhook_usernames_discord_accepts() -> None:
    assert markup.webhook_username("[discord] Steve") == f"[disc{ZW}ord] Steve"
    assert markup.webhook_username("Clyde") == f"Cly{ZW}de"
    assert markup.webhook_username("  ") == "Vonix"
    assert markup.webhook_username("here") == f"here{ZW}"
    assert len(markup.webhook_username("x" * 200)) == 80


def test_discord_markup_becomes_plain_vonix_text() -> None:
    message = {"content": "hi <@1> <@!2> <@3> <@&4> <#5> <#6> <:creeper:7> <a:party:8> <t:0:R>",
               "mentions": [{"id": "1", "username": "a", "global_name": "Alex"},
                            {"id": "2", "username": "s", "member": {"nick": "Steve (mod)"}}],
               "attachments": [{"url": "https://cdn.discordapp.com/x.png"}, {"url": "javascript:alert(1)"}]}
    names = {"5": "minecraft"}
    assert markup.from_discord(message, names.get) == (
        "hi @Alex @Steve (mod) @unknown-user @role #minecraft #channel :creeper: :party: 1970-01-01 00:00 UTC"
        "\nhttps://cdn.discordapp.com/x.png")
    assert markup.from_discord({"content": "  ", "attachments": []}) == ""
    assert markup.from_discord({"content": "a\x00b\r\nc"}) == "ab\nc"
    assert len(markup.from_discord({"content": "x" * 5000})) == markup.VONIX_MAX


def test_authors_names_and_avatars() -> None:
    assert markup.display_name({"username": "steve", "global_name": "Steve"}, {"nick": "Mod Steve"}) == "Mod Steve"
    assert markup.display_name({"username": "steve", "global_name": None}) == "steve"
    assert len(markup.display_name({"username": "x" * 40})) == 32
    user = {"id": "80351110224678912", "avatar": "8342729096ea3675442027381ff50dfe"}
    assert markup.avatar_url(user) == \
        "https://cdn.discordapp.com/avatars/80351110224678912/8342729096ea3675442027381ff50dfe.png?size=128"
    assert markup.avatar_url({"id": "80351110224678912", "avatar": "../../evil"}).startswith(
        "https://cdn.discordapp.com/embed/avatars/")


def test_config_from_settings() -> None:
    settings = make_settings(DISCORD_BRIDGE_ROOM="minecraft", DISCORD_CHANNEL_ID="42", DISCORD_BOT_TOKEN="b" * 20,
                             BRIDGE_BOT_TOKEN="vxb_" + "c" * 20,
                             DISCORD_WEBHOOK_URL="https://discord.com/api/webhooks/123/s3cr3t-hook")
    config = BridgeConfig.from_settings(settings)
    assert config.room == "room:minecraft" and config.webhook_id == "123" and config.channel_id == "42"
    assert "s3cr3t-hook" not in repr(settings) and "s3cr3t-hook" not in repr(config)
