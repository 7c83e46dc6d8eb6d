"""A game server's MOTD (and any other Minecraft text) rendered to safe HTML and to plain text.

Input is what a server sends: a string with `§` formatting codes (colours `0`-`f`, styles `k l m n
o`, reset `r`, and BungeeCord's `§x§r§r§g§g§b§b` hex colours), or a JSON chat component (`text`,
`extra`, `color` by name or `#rrggbb`, `bold`/`italic`/`underlined`/`strikethrough`/`obfuscated`,
`translate` with `with` and `fallback`, `keybind`), or a list of components. Bedrock's extra
colour codes (`g`-`u`) are mapped too.

The output is a flat run of `<span class="mc-gold mc-bold">…</span>`, with `<br>` for line breaks:
every character of text is HTML-escaped, and the only markup is this module's own, so nothing a
game server sends reaches a page unescaped. The strict CSP forbids inline styles, so a hex colour
becomes the nearest of the sixteen named colours (a class). Input is bounded: components nest at
most `MAX_DEPTH` deep and the text stops at `MAX_CHARS` characters.
"""

from __future__ import annotations

import html
import re
from dataclasses import dataclass, replace
from typing import Any

MAX_DEPTH = 16
MAX_CHARS = 1024

# name -> (legacy code, RGB)
COLOURS: dict[str, tuple[str, tuple[int, int, int]]] = {
    "black": ("0", (0x00, 0x00, 0x00)),
    "dark_blue": ("1", (0x00, 0x00, 0xAA)),
    "dark_green": ("2", (0x00, 0xAA, 0x00)),
    "dark_aqua": ("3", (0x00, 0xAA, 0xAA)),
    "dark_red": ("4", (0xAA, 0x00, 0x00)),
    "dark_purple": ("5", (0xAA, 0x00, 0xAA)),
    "gold": ("6", (0xFF, 0xAA, 0x00)),
    "gray": ("7", (0xAA, 0xAA, 0xAA)),
    "dark_gray": ("8", (0x55, 0x55, 0x55)),
    "blue": ("9", (0x55, 0x55, 0xFF)),
    "green": ("a", (0x55, 0xFF, 0x55)),
    "aqua": ("b", (0x55, 0xFF, 0xFF)),
    "red": ("c", (0xFF, 0x55, 0x55)),
    "light_purple": ("d", (0xFF, 0x55, 0xFF)),
    "yellow": ("e", (0xFF, 0xFF, 0x55)),
    "white": ("f", (0xFF, 0xFF, 0xFF)),
}
CODE_COLOURS = {code: name for name, (code, _) in COLOURS.items()}
# Bedrock's material colours (https://minecraft.wiki/w/Formatting_codes), as RGB to map to a name
BEDROCK_COLOURS = {
    "g": (0xDD, 0xD6, 0x05), "h": (0xE3, 0xD4, 0xD1), "i": (0xCE, 0xCA, 0xCA), "j": (0x44, 0x3A, 0x3B),
    "m": (0x97, 0x16, 0x07), "n": (0xB4, 0x68, 0x4D), "p": (0xDE, 0xB1, 0x2D), "q": (0x47, 0xA0, 0x36),
    "s": (0x2C, 0xBA, 0xA8), "t": (0x21, 0x49, 0x7B), "u": (0x9A, 0x5C, 0xC6),
}
STYLE_CODES = {"k": "obfuscated", "l": "bold", "m": "strikethrough", "n": "underlined", "o": "italic"}
STYLES = ("bold", "italic", "underlined", "strikethrough", "obfuscated")
HEX = re.compile(r"#[0-9a-fA-F]{6}")
# control characters other than the line break are dropped (they have no place in a page)
_CONTROL = re.compile(r"[\x00-\x09\x0b-\x1f\x7f-\x9f\u200b-\u200f\u202a-\u202e\u2066-\u2069]")
_LEGACY = re.compile(r"§(?:[xX](?:§[0-9a-fA-F]){6}|.)?", re.DOTALL)


@dataclass(frozen=True)
class Style:
    colour: str | None = None
    bold: bool = False
    italic: bool = False
    underlined: bool = False
    strikethrough: bool = False
    obfuscated: bool = False

    def classes(self) -> list[str]:
        names = [f"mc-{self.colour.replace('_', '-')}"] if self.colour else []
        return names + [f"mc-{style}" for style in STYLES if getattr(self, style)]


@dataclass
class Rendered:
    html: str
    text: str


def nearest_colour(rgb: tuple[int, int, int]) -> str:
    """The named colour closest to `rgb` (squared distance in RGB)."""
    return min(COLOURS, key=lambda name: sum((a - b) ** 2 for a, b in zip(COLOURS[name][1], rgb, strict=True)))


def _colour_of(value: Any) -> str | None:
    """A component's `color`: a name, or `#rrggbb` mapped to the nearest name; else none."""
    if not isinstance(value, str):
        return None
    if value in COLOURS:
        return value
    if HEX.fullmatch(value):
        return nearest_colour((int(value[1:3], 16), int(value[3:5], 16), int(value[5:7], 16)))
    return None


class _Builder:
    """Collects (text, style) runs up to MAX_CHARS characters."""

    def __init__(self) -> None:
        self.runs: list[tuple[str, Style]] = []
        self.size = 0

    @property
    def full(self) -> bool:
        return self.size >= MAX_CHARS

    def add(self, text: str, style: Style) -> None:
        text = _CONTROL.sub("", text.replace("\r\n", "\n").replace("\r", "\n"))
        if not text or self.full:
            return
        text = text[:MAX_CHARS - self.size]
        self.size += len(text)
        if self.runs and self.runs[-1][1] == style:
            self.runs[-1] = (self.runs[-1][0] + text, style)
        else:
            self.runs.append((text, style))

    def legacy(self, text: str, base: Style, bedrock: bool) -> None:
        """Text with `§` codes: a colour resets the styles (as the game does), `r` goes back to `base`."""
        style = base
        position = 0
        for match in _LEGACY.finditer(text):
            self.add(text[position:match.start()], style)
            position = match.end()
            code = match.group(0)[1:].lower()
            if len(code) > 1:  # §x§r§r§g§g§b§b
                digits = code[1:].replace("§", "")
                colour = nearest_colour((int(digits[0:2], 16), int(digits[2:4], 16), int(digits[4:6], 16)))
                style = Style(colour=colour)
            elif code in CODE_COLOURS:
                style = Style(colour=CODE_COLOURS[code])
            elif bedrock and code in BEDROCK_COLOURS:
                style = Style(colour=nearest_colour(BEDROCK_COLOURS[code]))
            elif code in STYLE_CODES:
                changes: dict[str, Any] = {STYLE_CODES[code]: True}
                style = replace(style, **changes)
            elif code == "r":
                style = base
            # an unknown code (or a lone § at the end) is dropped, like the game does
        self.add(text[position:], style)

    def component(self, value: Any, parent: Style, bedrock: bool, depth: int = 0) -> None:
        if depth > MAX_DEPTH or self.full:
            return
        if isinstance(value, str):
            self.legacy(value, parent, bedrock)
            return
        if isinstance(value, bool) or value is None:
            return
        if isinstance(value, int | float):
            self.add(str(value), parent)
            return
        if isinstance(value, list):
            # a list: the first element is the parent of the others
            if value:
                first = value[0]
                style = self._style(first, parent) if isinstance(first, dict) else parent
                self.component(first, parent, bedrock, depth + 1)
                for item in value[1:]:
                    self.component(item, style, bedrock, depth + 1)
            return
        if not isinstance(value, dict):
            return
        style = self._style(value, parent)
        if "text" in value:
            self.component(value["text"] if isinstance(value["text"], str | int | float) else "", style, bedrock,
                           depth + 1)
        elif isinstance(value.get("translate"), str):
            self._translate(value, style, bedrock, depth)
        elif isinstance(value.get("keybind"), str):
            self.legacy(value["keybind"], style, bedrock)
        extra = value.get("extra")
        if isinstance(extra, list):
            for item in extra:
                self.component(item, style, bedrock, depth + 1)

    def _translate(self, value: dict[str, Any], style: Style, bedrock: bool, depth: int) -> None:
        """We hold no language files: the `fallback` text when given, else the key with its
        `with` arguments filled in where it has `%s` (or `%1$s`) places."""
        if isinstance(value.get("fallback"), str):
            self.legacy(value["fallback"], style, bedrock)
            return
        key: str = value["translate"]
        given = value.get("with")
        arguments: list[Any] = given if isinstance(given, list) else []
        pieces = re.split(r"(%(?:\d+\$)?s)", key)
        next_argument = 0
        for piece in pieces:
            place = re.fullmatch(r"%(?:(\d+)\$)?s", piece)
            if place is None:
                self.legacy(piece, style, bedrock)
                continue
            index = int(place.group(1)) - 1 if place.group(1) else next_argument
            next_argument += 1
            if 0 <= index < len(arguments):
                self.component(arguments[index], style, bedrock, depth + 1)

    @staticmethod
    def _style(value: dict[str, Any], parent: Style) -> Style:
        changes: dict[str, Any] = {}
        colour = _colour_of(value.get("color"))
        if colour is not None:
            changes["colour"] = colour
        elif value.get("color") == "reset":
            changes["colour"] = None
        for name in STYLES:
            if isinstance(value.get(name), bool):
                changes[name] = value[name]
        return replace(parent, **changes) if changes else parent


def render(value: Any, *, bedrock: bool = False) -> Rendered:
    """`value` (a `§` string, a chat component or a list of them) as safe HTML and plain text."""
    builder = _Builder()
    builder.component(value, Style(), bedrock)
    parts: list[str] = []
    for text, style in builder.runs:
        escaped = html.escape(text, quote=True).replace("\n", "<br>")
        classes = style.classes()
        parts.append(f'<span class="{" ".join(classes)}">{escaped}</span>' if classes else escaped)
    return Rendered("".join(parts), "".join(text for text, _ in builder.runs))


def plain(value: Any, limit: int = 64) -> str:
    """One line of plain text (player names, versions): codes stripped, line breaks as spaces."""
    return " ".join(render(value).text.split())[:limit]
