"""The README's configuration table lists every variable the settings object reads."""

from __future__ import annotations

from pathlib import Path

from server.settings import Settings

README = (Path(__file__).resolve().parents[2] / "README.md").read_text()


def test_every_setting_is_documented() -> None:
    for name, field in Settings.model_fields.items():
        variable = str(field.validation_alias or name).upper()
        assert f"| `{variable}` |" in README, f"{variable} is missing from the README table"


def test_readme_gives_exactly_two_setup_commands() -> None:
    quick_start = README.split("## Quick start", 1)[1].split("##", 1)[0]
    block = quick_start.split("```sh", 1)[1].split("```", 1)[0]
    commands = [line.split("#")[0].strip() for line in block.strip().splitlines()]
    assert commands == ["make run", "make test"]
