"""Issue 14: the development SECRET_KEY survives restarts (`.vonix-secret`), tests and production
never write it; PUBLIC_URL defaults to the serve address; User-Agents name browser and OS."""

from __future__ import annotations

import stat
import threading
from pathlib import Path

import pytest

from server.auth.user_agent import parse_user_agent
from server.dev_secret import FILENAME, load_or_create
from server.settings import ConfigError, Settings, load_settings


@pytest.fixture
def clean_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Path:
    for name in ("SECRET_KEY", "VONIX_ENV", "PUBLIC_URL", "VONIX_HOST", "VONIX_PORT"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.chdir(tmp_path)
    return tmp_path


def dev_settings(**values: object) -> Settings:
    return load_settings(_env_file=None, **values)


def test_development_key_is_kept_in_a_private_file_and_reused(clean_env: Path) -> None:
    first = dev_settings()
    assert not (clean_env / FILENAME).exists(), "building settings writes nothing; the key is made on first use"
    key = first.secret()
    path = clean_env / FILENAME
    assert path.read_text().strip() == key and len(key) == 64
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    # The next start (a new settings object) signs with the same key, so 2FA and sessions survive.
    assert dev_settings().secret() == key
    assert first.model_copy(update={"port": 9000}).secret() == key
    assert [p.name for p in clean_env.iterdir()] == [FILENAME], "no temporary file is left behind"


def test_loosened_permissions_are_tightened_and_a_broken_file_is_refused(clean_env: Path) -> None:
    path = clean_env / FILENAME
    path.write_text("k" * 40 + "\n")
    path.chmod(0o644)
    assert dev_settings().secret() == "k" * 40
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    path.write_text("short\n")
    with pytest.raises(ConfigError, match="SECRET_KEY"):
        dev_settings().secret()
    assert path.read_text() == "short\n", "a broken key file is never overwritten (2FA secrets depend on it)"


def test_concurrent_first_starts_agree_on_one_key(tmp_path: Path) -> None:
    keys: list[str] = []
    threads = [threading.Thread(target=lambda: keys.append(load_or_create(tmp_path))) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(set(keys)) == 1 and (tmp_path / FILENAME).read_text().strip() == keys[0]


def test_test_and_production_never_use_the_file(clean_env: Path) -> None:
    (clean_env / FILENAME).write_text("d" * 64 + "\n")
    test_key = dev_settings(VONIX_ENV="test").secret()
    assert test_key != "d" * 64 and len(test_key) >= 32
    assert dev_settings(VONIX_ENV="test").secret() != test_key, "tests get a fresh random key"
    assert dev_settings(VONIX_ENV="production", SECRET_KEY="p" * 40).secret() == "p" * 40
    with pytest.raises(ConfigError, match="SECRET_KEY"):
        dev_settings(VONIX_ENV="production")
    (clean_env / FILENAME).unlink()
    dev_settings(VONIX_ENV="test").secret()
    assert not (clean_env / FILENAME).exists()


def test_secret_key_wins_over_the_file(clean_env: Path) -> None:
    assert dev_settings(SECRET_KEY="s" * 40).secret() == "s" * 40
    assert not (clean_env / FILENAME).exists()


def test_public_url_defaults_to_the_serve_address(clean_env: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    assert dev_settings().public_url == "http://127.0.0.1:8000"
    assert dev_settings(VONIX_PORT="9000").public_url == "http://127.0.0.1:9000"
    assert dev_settings().model_copy(update={"host": "10.1.2.3", "port": 9100}).public_url == "http://10.1.2.3:9100"
    assert dev_settings(VONIX_HOST="0.0.0.0").public_url == "http://127.0.0.1:8000"
    assert dev_settings(VONIX_HOST="::1").public_url == "http://[::1]:8000"
    assert dev_settings(PUBLIC_URL="").public_url == "http://127.0.0.1:8000"
    monkeypatch.setenv("PUBLIC_URL", "https://mc.example.org")
    assert dev_settings(VONIX_PORT="9000").public_url == "https://mc.example.org"


@pytest.mark.parametrize(
    ("agent", "browser", "os", "device"),
    [
        ("Mozilla/5.0 (Linux; Android 14; Pixel 8) AppleWebKit/537.36 (KHTML, like Gecko) "
         "Chrome/120.0.6099.144 Mobile Safari/537.36", "Chrome 120", "Android 14", "Chrome on Android"),
        ("Mozilla/5.0 (Windows NT 10.0; Win64; x64; rv:121.0) Gecko/20100101 Firefox/121.0",
         "Firefox 121", "Windows", "Firefox on Windows"),
        ("Mozilla/5.0 (iPhone; CPU iPhone OS 17_2 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) "
         "Version/17.2 Mobile/15E148 Safari/604.1", "Safari 17", "iOS 17", "Safari on iPhone"),
        ("Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/605.1.15 (KHTML, like Gecko) "
         "Version/17.2 Safari/605.1.15", "Safari 17", "macOS", "Safari on Mac"),
        ("Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) "
         "Chrome/120.0.0.0 Safari/537.36 Edg/120.0.2210.91", "Edge 120", "Windows", "Edge on Windows"),
        ("Mozilla/5.0 (Linux; Android 13; SM-S901B) AppleWebKit/537.36 (KHTML, like Gecko) "
         "SamsungBrowser/23.0 Chrome/115.0.0.0 Mobile Safari/537.36", "Samsung Internet 23", "Android 13",
         "Samsung Internet on Android"),
        ("Mozilla/5.0 (iPhone; CPU iPhone OS 17_2 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) "
         "CriOS/120.0.6099.119 Mobile/15E148 Safari/604.1", "Chrome 120", "iOS 17", "Chrome on iPhone"),
        ("Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) HeadlessChrome/120.0.0.0 "
         "Safari/537.36", "Chrome 120", "Linux", "Chrome on Linux"),
        ("python-httpx/0.27.0", "python-httpx 0.27.0", "Unknown OS", "python-httpx"),
        ("vonix-bot/1.0", "Vonix bot", "Unknown OS", "bot"),
        (None, "Unknown browser", "Unknown OS", "Unknown device"),
    ],
)
def test_user_agents_name_browser_and_os(agent: str | None, browser: str, os: str, device: str) -> None:
    client = parse_user_agent(agent)
    assert (client.browser, client.os, client.device) == (browser, os, device)
