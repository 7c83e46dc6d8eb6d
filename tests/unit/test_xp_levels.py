"""The level curve and bands (server/services/xp.py): reaching level L takes 25*L*(L-1) XP."""

from __future__ import annotations

import pytest

from server.services.xp import band, level_for, progress, xp_for


@pytest.mark.parametrize(("xp", "level"), [
    (-100, 1), (0, 1), (49, 1), (50, 2), (149, 2), (150, 3), (299, 3), (300, 4), (500, 5), (2249, 9), (2250, 10),
    (9499, 19), (9500, 20), (61249, 49), (61250, 50), (10**9, 6325),
])
def test_levels_follow_the_curve(xp: int, level: int) -> None:
    assert level_for(xp) == level
    assert xp_for(level) <= max(xp, 0) < xp_for(level + 1)


def test_every_level_has_a_title_and_colour_by_band() -> None:
    assert [band(n)["title"] for n in (1, 4, 5, 9, 10, 19, 20, 34, 35, 49, 50, 500)] == [
        "Newcomer", "Newcomer", "Regular", "Regular", "Veteran", "Veteran", "Elite", "Elite", "Champion",
        "Champion", "Legend", "Legend"]
    assert all(band(n)["colour"].startswith("#") for n in range(1, 60))
    assert progress(160) == {"level": 3, "title": "Newcomer", "colour": "#9ca3af", "xp": 160, "level_xp": 150,
                             "next_level_xp": 300}
