"""Text crossing the Discord bridge: Vonix text made inert on Discord, Discord markup made plain.

Outbound (Vonix -> Discord) the text is shown by Discord's markdown, which Vonix authors did not
write for: every markdown character outside URLs is backslash-escaped (Discord shows `\\*` as `*`),
`<` is escaped so `<@id>`, `<#id>`, `<t:…>` and `<@&id>` cannot be formed, `@everyone`/`@here`
get a zero-width space (and the webhook call says `allowed_mentions: {"parse": []}` as well), and
Vonix `@username` mentions become `@Display Name` as the webhook shows authors. URLs are left
alone so Discord still links them. Discord caps a message at 2,000 characters: longer text is cut
with "…".

Inbound (Discord -> Vonix) `<@id>`/`<@!id>` become `@name` (the message's `mentions`), `<@&id>`
`@role`, `<#id>` `#channel-name` (when the bridge knows it, else `#channel`), `<:name:id>` and
`<a:name:id>` `:name:`, `<t:unix[:style]>` an ISO time in UTC. Vonix escapes everything it shows,
so nothing else needs changing; attachments are appended as their URLs.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from typing import Any

DISCORD_MAX = 2000
VONIX_MAX = 4000
ZWSP = "\u200b"

_URL = re.compile(r"https?://[^\s<>]+")
_MARKDOWN = re.compile(r"([\\*_~`|<>\[\]()#:-])")
_MASS_MENTION = re.compile(r"@(everyone|here)", re.IGNORECASE)
VONIX_MENTION = re.compile(r"(?<![A-Za-z0-9_@])@([A-Za-z0-9_]{3,32})(?![A-Za-z0-9_])")

_USER = re.compile(r"<@!?(\d{1,20})>")
_ROLE = re.compile(r"<@&(\d{1,20})>")
_CHANNEL = re.compile(r"<#(\d{1,20})>")
_EMOJI = re.compile(r"<a?:([A-Za-z0-9_~]{1,64}):\d{1,20}>")
_TIMESTAMP = re.compile(r"<t:(-?\d{1,13})(?::[tTdDfFR])?>")
_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f]")


def escape_markdown(text: str) -> str:
    """Backslash-escape Discord markdown outside URLs; neutralise @everyone and @here."""
    out: list[str] = []
    last = 0
    for match in _URL.finditer(text):
        out.append(_escape_plain(text[last:match.start()]))
        out.append(match.group())
        last = match.end()
    out.append(_escape_plain(text[last:]))
    return "".join(out)


def _escape_plain(text: str) -> str:
    text = _MARKDOWN.sub(r"\\\1", text)
    return _MASS_MENTION.sub(lambda m: "@" + ZWSP + m.group(1), text)


def cut(text: str, limit: int) -> str:
    """At most `limit` characters, ending in "…" when cut (never in a lone escaping backslash)."""
    if len(text) <= limit:
        return text
    head = text[:limit - 1]
    trailing = len(head) - len(head.rstrip("\\"))
    if trailing % 2:
        head = head[:-1]
    return head + "…"


def to_discord(text: str, names: Mapping[str, str] | None = None) -> str:
    """Vonix message text -> Discord content. `names`: lower-case username -> display name, for
    the mentions in `text` the caller could resolve (others stay `@username`)."""
    names = names or {}

    def mention(match: re.Match[str]) -> str:
        return "@" + names.get(match.group(1).lower(), match.group(1))

    pieces: list[str] = []
    last = 0
    for match in VONIX_MENTION.finditer(text):
        pieces.append(escape_markdown(text[last:match.start()]))
        pieces.append(escape_markdown(mention(match)))
        last = match.end()
    pieces.append(escape_markdown(text[last:]))
    return cut("".join(pieces), DISCORD_MAX)


def mentioned_usernames(text: str) -> list[str]:
    """The Vonix usernames `text` mentions (lower case, first 20, in order)."""
    seen: list[str] = []
    for match in VONIX_MENTION.finditer(text):
        name = match.group(1).lower()
        if name not in seen and name not in ("everyone", "here"):
            seen.append(name)
        if len(seen) >= 20:
            break
    return seen


def webhook_username(name: str) -> str:
    """A name Discord accepts for a webhook message: 1-80 characters, no "discord"/"clyde" (refused
    by Discord with 400), not "everyone"/"here"."""
    clean = " ".join(_CONTROL.sub("", name).split()) or "Vonix"
    clean = re.sub(r"(?i)(disc)(ord)", "\\1" + ZWSP + "\\2", clean)
    clean = re.sub(r"(?i)(cly)(de)", "\\1" + ZWSP + "\\2", clean)
    if clean.lower() in ("everyone", "here"):
        clean = clean + ZWSP
    return cut(clean, 80)


def display_name(author: Mapping[str, Any], member: Mapping[str, Any] | None = None) -> str:
    """A Discord user as a server shows them: the server nickname, the global name, the username."""
    for value in ((member or {}).get("nick"), author.get("global_name"), author.get("username")):
        if isinstance(value, str) and value.strip():
            return " ".join(_CONTROL.sub("", value).split())[:32] or "someone"
    return "someone"


def avatar_url(author: Mapping[str, Any], cdn: str = "https://cdn.discordapp.com") -> str:
    """The author's avatar on Discord's CDN (the default avatar when they have none)."""
    user_id = str(author.get("id") or "0")
    avatar = author.get("avatar")
    if isinstance(avatar, str) and re.fullmatch(r"(a_)?[0-9a-f]{32}", avatar) and user_id.isdigit():
        return f"{cdn}/avatars/{user_id}/{avatar}.png?size=128"
    index = (int(user_id) >> 22) % 6 if user_id.isdigit() else 0
    return f"{cdn}/embed/avatars/{index}.png"


def from_discord(message: Mapping[str, Any], channel_name: Callable[[str], str | None] | None = None) -> str:
    """A Discord message's content (and attachment URLs) as Vonix text; "" when nothing is left."""
    content = str(message.get("content") or "")
    names: dict[str, str] = {}
    for mentioned in message.get("mentions") or []:
        if isinstance(mentioned, dict) and mentioned.get("id") is not None:
            names[str(mentioned["id"])] = display_name(mentioned, mentioned.get("member"))

    def user(match: re.Match[str]) -> str:
        return "@" + names.get(match.group(1), "unknown-user")

    def channel(match: re.Match[str]) -> str:
        name = channel_name(match.group(1)) if channel_name is not None else None
        return "#" + (name or "channel")

    def timestamp(match: re.Match[str]) -> str:
        try:
            return datetime.fromtimestamp(int(match.group(1)), UTC).strftime("%Y-%m-%d %H:%M UTC")
        except (ValueError, OverflowError, OSError):
            return match.group()

    content = _USER.sub(user, content)
    content = _ROLE.sub("@role", content)
    content = _CHANNEL.sub(channel, content)
    content = _EMOJI.sub(r":\1:", content)
    content = _TIMESTAMP.sub(timestamp, content)
    lines = [content.strip()] if content.strip() else []
    for attachment in message.get("attachments") or []:
        url = attachment.get("url") if isinstance(attachment, dict) else None
        if isinstance(url, str) and url.startswith("https://"):
            lines.append(url)
    text = "\n".join(lines)
    text = _CONTROL.sub("", text.replace("\r\n", "\n"))
    return cut(text.strip(), VONIX_MAX)


def channel_ids(content: str) -> list[str]:
    """The channel ids `<#id>` in a Discord message (to look their names up first)."""
    return list(dict.fromkeys(_CHANNEL.findall(content)))
