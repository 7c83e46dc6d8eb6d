"""Forum Markdown (server/services/markdown.py): CommonMark + tables + strikethrough, nothing unsafe
gets through, links are nofollow, `@name` of an existing member links to their profile."""

from __future__ import annotations

import asyncio
import re
from html.parser import HTMLParser

import pytest

from server.services.markdown import mention_candidates, render, render_with, sanitize

MEMBERS = {"alice": "Alice", "bob_x": "bob_x"}


def html(source: str) -> str:
    return render_with(source, MEMBERS).html


@pytest.mark.parametrize("source", [
    "<script>alert(1)</script>",
    "<img src=x onerror=alert(1)>",
    "[click](javascript:alert(1))",
    "[click](JaVaScRiPt:alert(1))",
    "[click](  javascript:alert(1))",
    "[x](vbscript:msgbox(1))",
    "[x](data:text/html;base64,PHNjcmlwdD4=)",
    "![x](javascript:alert(1))",
    "<a href=\"javascript:alert(1)\">x</a>",
    "<iframe src=\"https://evil\"></iframe>",
    "<svg onload=alert(1)>",
    "[x](https://ok.example \"t\\\" onmouseover=alert(1)\")",
    "<script>alert(1)</script> [ok](https://ok.example)",
])
def test_nothing_executable_gets_through(source: str) -> None:
    """Checked on the parsed output (escaped text like `&lt;script&gt;` is harmless)."""
    elements = Elements()
    elements.feed(html(source))
    for tag, attrs in elements.seen:
        assert tag in {"p", "a", "img", "code"}, (source, tag)
        for name, value in attrs:
            assert not name.startswith("on"), (source, name)
            if name in ("href", "src"):
                assert re.match(r"(https?:|mailto:|/)", value or ""), (source, value)


class Elements(HTMLParser):
    """Every element of an HTML fragment with its attributes."""

    def __init__(self) -> None:
        super().__init__()
        self.seen: list[tuple[str, list[tuple[str, str | None]]]] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.seen.append((tag, attrs))


def test_raw_html_is_shown_as_text() -> None:
    assert html("<b>bold</b> & <i>") == "<p>&lt;b&gt;bold&lt;/b&gt; &amp; &lt;i&gt;</p>\n"


def test_commonmark_tables_and_strikethrough() -> None:
    assert html("**b** _i_ ~~s~~ `c`") == "<p><strong>b</strong> <em>i</em> <s>s</s> <code>c</code></p>\n"
    table = html("| a | b |\n|:--|--:|\n| 1 | 2 |")
    assert '<th style="text-align:left">a</th>' in table and '<td style="text-align:right">2</td>' in table
    assert html("```python\nx = 1\n```") == "<pre><code>x = 1\n</code></pre>\n"
    assert html("> quoted\n\n1. one\n2. two") == (
        "<blockquote>\n<p>quoted</p>\n</blockquote>\n<ol>\n<li>one</li>\n<li>two</li>\n</ol>\n")


def test_links_are_nofollow_noopener() -> None:
    assert html("[site](https://vonix.net)") == '<p><a href="https://vonix.net" rel="nofollow noopener">site</a></p>\n'
    assert html("<https://vonix.net>") == (
        '<p><a href="https://vonix.net" rel="nofollow noopener">https://vonix.net</a></p>\n')
    # a rel smuggled into raw HTML is text anyway; the sanitizer on its own replaces it too
    assert sanitize('<a href="https://x.y" rel="opener" target="_blank">x</a>') == (
        '<a href="https://x.y" rel="nofollow noopener">x</a>')


def test_mentions_of_existing_members_link_to_their_profile() -> None:
    rendered = render_with("hi @alice, @bob_x and @nobody; mail a@alice.com", MEMBERS)
    assert rendered.html == (
        '<p>hi <a href="/u/Alice" class="mention" rel="nofollow noopener">@Alice</a>, '
        '<a href="/u/bob_x" class="mention" rel="nofollow noopener">@bob_x</a> and @nobody; mail a@alice.com</p>\n')
    assert rendered.mentions == {"Alice", "bob_x"}
    # not in code, not inside a link's label
    quiet = render_with("`@alice` [@alice](https://x.y)\n\n    @alice", MEMBERS)
    assert quiet.mentions == frozenset() and "/u/" not in quiet.html
    assert mention_candidates("@Alice @bob_x `@carol` @al") == {"alice", "bob_x"}


def test_render_asks_which_names_exist_once() -> None:
    asked: list[set[str]] = []

    async def resolve(names: set[str]) -> dict[str, str]:
        asked.append(names)
        return {name: name.capitalize() for name in names if name == "steve"}

    rendered = asyncio.run(render("@steve @STEVE @herobrine", resolve))
    assert asked == [{"steve", "herobrine"}]
    assert rendered.mentions == {"Steve"} and rendered.html.count('href="/u/Steve"') == 2
    assert asyncio.run(render("no mentions", resolve)).html == "<p>no mentions</p>\n" and len(asked) == 1


def test_long_posts_render_the_same_off_the_event_loop() -> None:
    async def resolve(names: set[str]) -> dict[str, str]:
        return {"alice": "Alice"} if "alice" in names else {}

    source = "Hey @alice, <b>look</b>:\n\n" + "word " * 1000  # past OFFLOAD_CHARS
    rendered = asyncio.run(render(source, resolve))
    assert rendered == render_with(source, {"alice": "Alice"})
    assert rendered.mentions == {"Alice"} and "&lt;b&gt;look&lt;/b&gt;" in rendered.html
