"""`vonix` start-up failures: one clear line naming the variable, non-zero exit, no traceback."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.support.services import free_port

VONIX = [sys.executable, "-m", "server.cli"]
ROOT = Path(__file__).resolve().parents[2]


def run_vonix(args: list[str], env: dict[str, str], cwd: Path) -> subprocess.CompletedProcess[str]:
    clean = {k: v for k, v in os.environ.items()
             if k not in {"DATABASE_URL", "REDIS_URL", "SECRET_KEY", "VONIX_ENV"}}
    clean.update(env)
    clean["PYTHONPATH"] = str(ROOT)
    return subprocess.run([*VONIX, *args], env=clean, cwd=cwd, capture_output=True, text=True, timeout=60)


@pytest.mark.parametrize(
    ("env", "variable", "exit_code"),
    [
        ({"VONIX_ENV": "production"}, "SECRET_KEY", 2),
        ({"DATABASE_URL": "postgres:/nonsense//"}, "DATABASE_URL", 2),
        ({"DATABASE_URL": "oracle://db/x"}, "DATABASE_URL", 2),
        ({"DATABASE_URL": f"postgresql://vonix@127.0.0.1:{free_port()}/vonix", "DB_TIMEOUT": "2"},
         "DATABASE_URL", 3),
    ],
)
def test_start_up_failures_are_one_clear_line(
    tmp_path: Path, env: dict[str, str], variable: str, exit_code: int
) -> None:
    result = run_vonix(["serve", "--port", str(free_port())], env, tmp_path)
    assert result.returncode == exit_code
    lines = [line for line in result.stderr.splitlines() if line.startswith("vonix:")]
    assert len(lines) == 1, result.stderr
    assert variable in lines[0]
    assert "Traceback" not in result.stderr + result.stdout


def test_migrate_takes_empty_sqlite_to_head_and_is_idempotent(tmp_path: Path) -> None:
    env = {"DATABASE_URL": f"sqlite:///{tmp_path}/fresh.db"}
    first = run_vonix(["migrate"], env, tmp_path)
    assert first.returncode == 0, first.stderr
    assert "at head" in first.stdout
    again = run_vonix(["migrate", "status"], env, tmp_path)
    assert "at head" in again.stdout
    down = run_vonix(["migrate", "down", "--revision", "base"], env, tmp_path)
    assert "behind head" in down.stdout


def test_create_admin_and_bot(tmp_path: Path) -> None:
    env = {"DATABASE_URL": f"sqlite:///{tmp_path}/cli.db", "VONIX_ADMIN_PASSWORD": "an admin passphrase 12"}
    assert run_vonix(["migrate"], env, tmp_path).returncode == 0
    admin = run_vonix(["create-admin", "Op_Olga", "olga@example.com"], env, tmp_path)
    assert admin.returncode == 0 and "admin Op_Olga created" in admin.stdout
    duplicate = run_vonix(["create-admin", "op_olga", "x@example.com"], env, tmp_path)
    assert duplicate.returncode == 1 and "exists" in duplicate.stderr
    weak = run_vonix(["create-admin", "Op_Two", "two@example.com"], {**env, "VONIX_ADMIN_PASSWORD": "password"},
                     tmp_path)
    assert weak.returncode == 2
    bot = run_vonix(["create-bot", "relay_bot", "--scopes", "subscribe,publish"], env, tmp_path)
    assert bot.returncode == 0
    token_line = next(line for line in bot.stdout.splitlines() if line.startswith("token"))
    assert token_line.split(": ", 1)[1].startswith("vxb_")
