"""Issue 14: with PUBLIC_URL unset, `vonix serve --port N` mails links to http://127.0.0.1:N (not :8000),
and a development server keeps its generated key in `.vonix-secret` in its working directory."""

from __future__ import annotations

import asyncio
import os
import signal
import stat
import subprocess
import sys
import time
from pathlib import Path

import httpx

from tests.support.accounts import register
from tests.support.services import free_port
from tests.support.smtp import SmtpServer, body_of, link_token

ROOT = Path(__file__).resolve().parents[2]


async def _wait_healthy(base_url: str, process: subprocess.Popen[str]) -> None:
    deadline = time.monotonic() + 60
    async with httpx.AsyncClient(base_url=base_url, timeout=1) as client:
        while time.monotonic() < deadline:
            if process.poll() is not None:
                raise AssertionError(f"vonix serve exited: {process.communicate()[0]}")
            try:
                if (await client.get("/api/health")).status_code == 200:
                    return
            except httpx.TransportError:
                pass
            await asyncio.sleep(0.2)
    raise AssertionError("vonix serve did not become healthy")


async def test_mail_links_follow_the_serve_port_when_public_url_is_unset(
    tmp_path: Path, smtp_server: SmtpServer
) -> None:
    port = free_port()
    env = {k: v for k, v in os.environ.items()
           if k not in {"DATABASE_URL", "REDIS_URL", "SECRET_KEY", "VONIX_ENV", "PUBLIC_URL", "VONIX_PORT",
                        "VONIX_HOST"}}
    env.update({"DATABASE_URL": f"sqlite:///{tmp_path}/vonix.db", "SMTP_URL": smtp_server.url,
                "PYTHONPATH": str(ROOT), "MAINTENANCE_ENABLED": "false"})
    process = subprocess.Popen([sys.executable, "-m", "server.cli", "serve", "--port", str(port)], cwd=tmp_path,
                               env=env, start_new_session=True, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                               text=True)
    base_url = f"http://127.0.0.1:{port}"
    try:
        await _wait_healthy(base_url, process)
        async with httpx.AsyncClient(base_url=base_url, timeout=10) as client:
            await register(client, "Port_Pia")
            verify = await smtp_server.wait_for("port_pia@example.com", "Confirm your Vonix email", timeout=10)
            assert f"{base_url}/verify-email?token=" in body_of(verify)
            # Reset links go only to confirmed addresses.
            confirmed = await client.post("/api/auth/email/verify", json={"token": link_token(verify)})
            assert confirmed.status_code == 204
            forgot = await client.post("/api/auth/password/forgot", json={"email": "port_pia@example.com"})
            assert forgot.status_code == 202
            reset = await smtp_server.wait_for("port_pia@example.com", "Reset your Vonix password", timeout=10)
        assert f"{base_url}/reset-password?token=" in body_of(reset)
        assert "127.0.0.1:8000" not in body_of(reset)
        # Development without SECRET_KEY: the key lives in the working directory, owner-only.
        key_file = tmp_path / ".vonix-secret"
        assert key_file.exists() and stat.S_IMODE(key_file.stat().st_mode) == 0o600
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGINT)
            try:
                process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, signal.SIGKILL)
                process.wait()
        if process.stdout is not None:
            process.stdout.close()
