"""Markdown for forum posts: CommonMark with tables and strikethrough, rendered to safe HTML.

Two layers, because either alone is one bug away from stored XSS: markdown-it renders with raw
HTML off (a `<script>` in the source becomes text, and its link validator drops `javascript:` and
friends), then nh3 (ammonia) keeps only an allow-list of tags, attributes and URL schemes and adds
`rel="nofollow noopener"` to every link. `@username` of an existing member becomes a link to their
profile; the names found are returned so the caller can notify them. Rendering happens once, when
a post is written: lists serve the stored HTML.
"""

from __future__ import annotations

import asyncio
import functools
import re
from collections.abc import Awaitable, Callable, Iterable, Mapping
from dataclasses import dataclass

import nh3
from markdown_it import MarkdownIt
from markdown_it.token import Token

# The same shape of mention as chat (server/notifications/service.py), at most this many per post.
MENTION = re.compile(r"(?<![A-Za-z0-9_@])@([A-Za-z0-9_]{3,32})(?![A-Za-z0-9_])")
MAX_MENTIONS = 20
OFFLOAD_CHARS = 2_000  # longer sources render in a worker thread

TAGS = {"p", "br", "hr", "h1", "h2", "h3", "h4", "h5", "h6", "strong", "em", "del", "s", "code", "pre",
        "blockquote", "ul", "ol", "li", "a", "img", "table", "thead", "tbody", "tr", "th", "td"}
ATTRIBUTES = {"a": {"href", "title"}, "img": {"src", "alt", "title"}, "ol": {"start"},
              "th": {"style"}, "td": {"style"}}
_cleaner = nh3.Cleaner(
    tags=TAGS, clean_content_tags={"script", "style"}, attributes=ATTRIBUTES,
    link_rel="nofollow noopener", url_schemes={"http", "https", "mailto"},
    filter_style_properties={"text-align"},  # table column alignment
    allowed_classes={"a": {"mention"}},
)
_md = MarkdownIt("commonmark", {"html": False}).enable(["table", "strikethrough"])

# lower-case names -> the member's username as spelled, for those that exist
Resolve = Callable[[set[str]], Awaitable[Mapping[str, str]]]


@dataclass(frozen=True, slots=True)
class Rendered:
    html: str
    mentions: frozenset[str]  # usernames (as spelled) of the existing members mentioned


def _texts(tokens: Iterable[Token]) -> Iterable[Token]:
    """Inline text tokens outside links (a mention inside a link's label stays plain text)."""
    for block in tokens:
        if block.type != "inline" or not block.children:
            continue
        depth = 0
        for token in block.children:
            if token.type == "link_open":
                depth += 1
            elif token.type == "link_close":
                depth -= 1
            elif token.type == "text" and depth == 0:
                yield token


def _candidates(tokens: list[Token]) -> set[str]:
    names: set[str] = set()
    for token in _texts(tokens):
        for match in MENTION.finditer(token.content):
            names.add(match.group(1).lower())
            if len(names) >= MAX_MENTIONS:
                return names
    return names


def _split(token: Token, members: Mapping[str, str], found: set[str]) -> list[Token]:
    """A text token with its mentions of existing members turned into profile links."""
    out: list[Token] = []
    text, last = token.content, 0
    for match in MENTION.finditer(text):
        name = members.get(match.group(1).lower())
        if name is None:
            continue
        if match.start() > last:
            out.append(_text(text[last:match.start()]))
        link = Token("link_open", "a", 1)
        link.attrs = {"href": f"/u/{name}", "class": "mention"}
        out += [link, _text(f"@{name}"), Token("link_close", "a", -1)]
        found.add(name)
        last = match.end()
    if not out:
        return [token]
    if last < len(text):
        out.append(_text(text[last:]))
    return out


def _text(content: str) -> Token:
    token = Token("text", "", 0)
    token.content = content
    return token


def _link_mentions(tokens: list[Token], members: Mapping[str, str]) -> set[str]:
    found: set[str] = set()
    if not members:
        return found
    for block in tokens:
        if block.type != "inline" or not block.children:
            continue
        targets = set(map(id, _texts([block])))
        children: list[Token] = []
        for token in block.children:
            children += _split(token, members, found) if id(token) in targets else [token]
        block.children = children
    return found


def mention_candidates(source: str) -> set[str]:
    """Lower-case names written as `@name` outside links and code (the names worth looking up)."""
    return _candidates(_md.parse(source))


def render_with(source: str, members: Mapping[str, str]) -> Rendered:
    """Render with a known map of existing members (lower-case name -> username)."""
    return _finish(_md.parse(source), members)


async def render(source: str, resolve: Resolve) -> Rendered:
    """Render `source`; `resolve` says which of the mentioned names are existing members. Long
    sources are parsed and rendered in a worker thread (a crafted 10,000-character post takes a
    few hundred milliseconds, which the event loop must not wait for)."""
    offload = len(source) > OFFLOAD_CHARS
    tokens = await asyncio.to_thread(_md.parse, source) if offload else _md.parse(source)
    names = _candidates(tokens)
    members = await resolve(names) if names else {}
    finish = functools.partial(_finish, tokens, members)
    return await asyncio.to_thread(finish) if offload else finish()


def _finish(tokens: list[Token], members: Mapping[str, str]) -> Rendered:
    found = _link_mentions(tokens, members)
    return Rendered(sanitize(_md.renderer.render(tokens, _md.options, {})), frozenset(found))


def sanitize(html: str) -> str:
    """The allow-list pass; safe on any HTML, not just ours."""
    return _cleaner.clean(html)
