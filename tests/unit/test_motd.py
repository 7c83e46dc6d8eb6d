"""MOTD rendering (server/minecraft/motd.py): § codes and JSON chat components to safe HTML and
plain text; nothing a game server sends reaches the page unescaped; favicons validated."""

from __future__ import annotations

import base64
import re
from html import unescape

import pytest

from server.minecraft import motd
from server.minecraft.ping import decode_favicon, java_result, reason_of, valid_png
from tests.support.mc_standin import png


def html(value: object, **kwargs: bool) -> str:
    return motd.render(value, **kwargs).html


def text(value: object) -> str:
    return motd.render(value).text


def test_section_sign_colours_and_styles() -> None:
    assert html("§6Gold §lbold§r plain") == \
        '<span class="mc-gold">Gold </span><span class="mc-gold mc-bold">bold</span> plain'
    assert text("§6Gold §lbold§r plain") == "Gold bold plain"
    # a colour resets the styles, as in the game; every colour and style has its class
    assert html("§l§nA§cB") == '<span class="mc-bold mc-underlined">A</span><span class="mc-red">B</span>'
    for code, name in (("0", "black"), ("1", "dark-blue"), ("2", "dark-green"), ("3", "dark-aqua"),
                       ("4", "dark-red"), ("5", "dark-purple"), ("7", "gray"), ("8", "dark-gray"), ("9", "blue"),
                       ("a", "green"), ("b", "aqua"), ("d", "light-purple"), ("e", "yellow"), ("f", "white")):
        assert html(f"§{code}x") == f'<span class="mc-{name}">x</span>'
        assert html(f"§{code.upper()}x") == f'<span class="mc-{name}">x</span>'
    assert html("§kA§mB§oC") == ('<span class="mc-obfuscated">A</span><span class="mc-strikethrough mc-obfuscated">'
                                 'B</span><span class="mc-italic mc-strikethrough mc-obfuscated">C</span>')
    # unknown codes and a lone § at the end vanish; line breaks become <br>
    assert html("a§zb§") == "ab"
    assert html("line one\n§eline two") == 'line one<br><span class="mc-yellow">line two</span>'
    assert text("line one\n§eline two") == "line one\nline two"


def test_hex_colours_become_the_nearest_named_class() -> None:
    assert motd.nearest_colour((0xFF, 0xAB, 0x01)) == "gold"
    assert html({"text": "hi", "color": "#FFAA00"}) == '<span class="mc-gold">hi</span>'
    assert html("§x§5§5§f§f§5§5green") == '<span class="mc-green">green</span>'
    # never an inline style, whatever the colour value
    for colour in ("#123456", "red; background: url(x)", "#zzzzzz", 12):
        assert "style" not in html({"text": "x", "color": colour})
    assert html({"text": "x", "color": "red; background: url(x)"}) == "x"


def test_json_components_inherit_and_override() -> None:
    component = {"text": "Vonix ", "color": "aqua", "bold": True, "extra": [
        {"text": "Network", "color": "gold", "bold": False},
        {"text": " !", "italic": True, "underlined": True, "strikethrough": True, "obfuscated": True},
        "\n§7Play now", 42,
    ]}
    assert html(component) == (
        '<span class="mc-aqua mc-bold">Vonix </span><span class="mc-gold">Network</span>'
        '<span class="mc-aqua mc-bold mc-italic mc-underlined mc-strikethrough mc-obfuscated"> !</span>'
        '<span class="mc-aqua mc-bold"><br></span><span class="mc-gray">Play now</span>'
        '<span class="mc-aqua mc-bold">42</span>')
    assert text(component) == "Vonix Network !\nPlay now42"
    # a list: the first element is the parent of the rest
    assert html([{"text": "A", "color": "red"}, {"text": "B"}, "C"]) == '<span class="mc-red">ABC</span>'
    # a § string inside a component: § codes apply on the component's style, §r back to it
    assert html({"text": "§lX§rY", "color": "green"}) == \
        '<span class="mc-green mc-bold">X</span><span class="mc-green">Y</span>'


def test_translate_uses_the_fallback_or_the_key_with_its_arguments() -> None:
    assert text({"translate": "vonix.welcome", "fallback": "Welcome!"}) == "Welcome!"
    # no language files here: a key without `%s` places shows as it is
    assert text({"translate": "chat.type.text", "with": ["Steve", {"text": "hi", "color": "red"}]}) == "chat.type.text"
    assert text({"translate": "%s joined %s", "with": ["Steve", "Survival"]}) == "Steve joined Survival"
    assert text({"translate": "%2$s then %1$s", "with": ["a", "b"]}) == "b then a"
    assert text({"translate": "%s and %s", "with": ["only"]}) == "only and "
    assert text({"keybind": "key.jump"}) == "key.jump"


@pytest.mark.parametrize("attack", [
    "<script>alert(1)</script>",
    "§c<img src=x onerror=alert(1)>",
    {"text": "<script>alert(1)</script>", "color": "red"},
    {"text": "\"><svg onload=alert(1)>", "extra": [{"text": "</span><script>x</script>"}]},
    {"translate": "<b>%s</b>", "with": ["<i>"]},
    {"text": "x", "color": "\" onmouseover=\"alert(1)"},
    ["<a href='javascript:alert(1)'>", {"text": "&amp;"}],
])
def test_nothing_from_a_server_reaches_the_page_unescaped(attack: object) -> None:
    rendered = motd.render(attack)
    # the only tags are our own spans and line breaks, the only attribute our class names
    for tag in re.findall(r"<[^>]*>", rendered.html):
        assert re.fullmatch(r'<span class="(mc-[a-z-]+ ?)+">|</span>|<br>', tag), tag
    outside_tags = re.sub(r'<span class="[a-z -]+">|</span>|<br>', "", rendered.html)
    assert "<" not in outside_tags and ">" not in outside_tags and '"' not in outside_tags
    assert unescape(outside_tags) == rendered.text.replace("\n", "")  # all the text, escaped


def test_control_characters_depth_and_length_are_bounded() -> None:
    assert text("a\x00b\x1bc\u202ed") == "abcd"
    deep: dict[str, object] = {"text": "x"}
    for _ in range(200):
        deep = {"text": "", "extra": [deep]}
    assert text(deep) == ""  # past MAX_DEPTH: dropped, not a RecursionError
    assert len(text("a" * 10_000)) == motd.MAX_CHARS
    assert text(None) == "" and text(True) == "" and text({"unknown": 1}) == ""


def test_bedrock_colour_codes() -> None:
    assert html("§gGold coin", bedrock=True) == '<span class="mc-gold">Gold coin</span>'
    # on Java, §m and §n are styles; on Bedrock, colours
    assert html("§mx") == '<span class="mc-strikethrough">x</span>'
    assert "mc-strikethrough" not in html("§mx", bedrock=True)


def test_plain_names_and_versions() -> None:
    assert motd.plain("§cMaintenance §7mode\n now") == "Maintenance mode now"
    assert motd.plain("x" * 100, 16) == "x" * 16


def test_favicons_are_validated_pngs() -> None:
    icon = png()
    assert valid_png(icon)
    assert decode_favicon("data:image/png;base64," + base64.b64encode(icon).decode()) == icon
    assert not valid_png(png(32))  # the game's icon is 64x64
    assert not valid_png(b"GIF89a" + icon[6:])
    assert not valid_png(icon[:26] + b"\x01" + icon[27:])  # a broken IHDR checksum
    assert not valid_png(icon + b"\x00" * (64 * 1024))  # too big
    assert decode_favicon("data:image/png;base64,!!!notbase64") is None
    assert decode_favicon("data:image/svg+xml;base64," + base64.b64encode(b"<svg/>").decode()) is None
    assert decode_favicon(12) is None


def test_status_json_and_failure_reasons() -> None:
    result = java_result({"version": {"name": "§aPaper 1.21.4", "protocol": 769},
                          "players": {"online": 2, "max": 10, "sample": [
                              {"name": "Steve", "id": "a"},
                              {"name": "§6Welcome!", "id": "00000000-0000-0000-0000-000000000000"},
                              {"name": "<b>Alex</b>", "id": "b"}, "junk"]},
                          "description": "§6Hi"}, 12.345)
    assert (result.online, result.players_online, result.players_max, result.version, result.latency_ms) == \
        (True, 2, 10, "Paper 1.21.4", 12.3)
    assert result.sample == ["Steve", "<b>Alex</b>"]  # stored as text; escaped where shown
    with pytest.raises(ValueError):
        java_result({"players": {"online": "many", "max": 1}}, None)
    with pytest.raises(ValueError):
        java_result(["not", "a", "status"], None)
    assert reason_of(TimeoutError()) == "timeout"
    assert reason_of(ConnectionRefusedError()) == "refused"
    assert reason_of(ConnectionResetError()) == "closed"
    assert reason_of(OSError("Server did not respond with any information!")) == "closed"
    assert reason_of(OSError("Received invalid JSON")) == "bad_response"
    assert reason_of(KeyError("players")) == "bad_response"
