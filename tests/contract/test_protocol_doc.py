"""docs/protocol.md cannot drift from realtime/errors.py: the close-code and reply-error tables list
exactly the codes the code defines, with the reason and reconnect advice the code gives."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from realtime import errors, protocol
from tests.contract.schemas import reply_error_codes

DOC = Path(__file__).resolve().parents[2] / "docs" / "protocol.md"


def section(title: str) -> str:
    text = DOC.read_text()
    match = re.search(rf"^## {re.escape(title)}\n(.*?)(?=^## |\Z)", text, re.S | re.M)
    assert match, f"docs/protocol.md has no '## {title}' section"
    return match.group(1)


def table_rows(title: str) -> list[list[str]]:
    """The body rows of the first table of a section, as stripped cells."""
    rows = []
    for line in section(title).splitlines():
        if line.startswith("|") and not set(line) <= set("|- "):
            rows.append([cell.strip() for cell in line.strip().strip("|").split("|")])
    return rows[1:]  # without the header


def close_rows() -> dict[int, list[str]]:
    return {int(row[0]): row for row in table_rows("Close codes")}


def error_rows() -> dict[str, list[str]]:
    return {row[0].strip("`"): row for row in table_rows("Reply error codes")}


@pytest.mark.parametrize("disconnect", errors.ALL_DISCONNECTS, ids=lambda d: str(d.code))
def test_every_close_code_is_documented_with_its_reason_and_advice(disconnect: errors.Disconnect) -> None:
    row = close_rows().get(disconnect.code)
    assert row is not None, f"close code {disconnect.code} is missing from docs/protocol.md"
    _code, reason, advice, _when = row
    assert reason == f"`{disconnect.reason}`"
    assert advice.startswith("yes" if disconnect.reconnect else "no")
    if 4000 <= disconnect.code <= 4099:
        assert not disconnect.reconnect, "4000-4099 means: do not reconnect"
    if 4100 <= disconnect.code <= 4199:
        assert disconnect.reconnect and ("backoff" in advice or "refresh" in advice)
    if disconnect.code == 1012:
        assert "now" in advice


def test_the_close_table_lists_no_code_the_server_lacks() -> None:
    assert set(close_rows()) == {d.code for d in errors.ALL_DISCONNECTS}


@pytest.mark.parametrize("code", sorted(reply_error_codes()))
def test_every_reply_error_code_is_documented(code: str) -> None:
    assert code in error_rows(), f"reply error code {code!r} is missing from docs/protocol.md"


def test_the_error_table_lists_no_code_the_server_lacks() -> None:
    assert set(error_rows()) == reply_error_codes()


def test_every_op_has_a_section() -> None:
    ops = set(re.findall(r"^### `(\w+)`$", section("Ops"), re.M))
    assert ops == protocol.OPS


def test_documented_limits_match_the_code() -> None:
    text = DOC.read_text()
    assert f"{protocol.MAX_FRAME_BYTES // 1024} KiB" in text
    assert f"at most {protocol.MAX_CHANNEL_LENGTH} characters" in text
    assert protocol.CHANNEL_PATTERN.pattern in text
