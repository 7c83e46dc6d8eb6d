from __future__ import annotations

from pathlib import Path

import pytest

from server.settings import ConfigError, Environment, Settings, load_settings


def settings(**values: object) -> Settings:
    return load_settings(_env_file=None, **values)


def test_defaults_are_embedded(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.chdir(tmp_path)  # development keeps its generated key in ./.vonix-secret
    for name in ("DATABASE_URL", "REDIS_URL", "VONIX_ENV", "SECRET_KEY"):
        monkeypatch.delenv(name, raising=False)
    s = settings()
    assert s.env is Environment.DEVELOPMENT
    assert s.database_url == "sqlite:///./vonix.db"
    assert s.database.is_sqlite
    assert s.redis_url is None
    assert (s.host, s.port) == ("127.0.0.1", 8000)
    assert s.should_migrate_on_start
    assert len(s.secret()) >= 32


def test_settings_are_immutable() -> None:
    s = settings()
    with pytest.raises(Exception, match="frozen"):
        s.port = 1  # type: ignore[misc]


def test_reads_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DATABASE_URL", "postgresql://u:pw@db.example:5432/vonix")
    monkeypatch.setenv("REDIS_URL", "redis://cache:6379/0")
    monkeypatch.setenv("TRUSTED_PROXIES", "10.0.0.1, 10.0.0.2")
    monkeypatch.setenv("VONIX_REPLICAS", "3")
    s = settings()
    assert s.database.is_postgres
    assert s.database.for_databases == "postgresql://u:pw@db.example:5432/vonix"
    assert s.database.for_sqlalchemy_async.startswith("postgresql+asyncpg://")
    assert "pw" not in s.database.safe
    assert s.trusted_proxies == ["10.0.0.1", "10.0.0.2"]
    assert s.replicas == 3


def test_reads_dotenv_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("LOG_LEVEL", raising=False)
    (tmp_path / ".env").write_text("LOG_LEVEL=debug\nVONIX_PORT=9001\n")
    monkeypatch.chdir(tmp_path)
    s = load_settings()
    assert s.log_level == "DEBUG"
    assert s.port == 9001


@pytest.mark.parametrize(
    ("values", "variable"),
    [
        ({"VONIX_ENV": "production"}, "SECRET_KEY"),
        ({"VONIX_ENV": "production", "SECRET_KEY": "short"}, "SECRET_KEY"),
        ({"DATABASE_URL": "mysql://x/y"}, "DATABASE_URL"),
        ({"DATABASE_URL": "not a url"}, "DATABASE_URL"),
        ({"DATABASE_URL": "postgresql://"}, "DATABASE_URL"),
        ({"REDIS_URL": "http://cache"}, "REDIS_URL"),
        ({"VONIX_PORT": "99999"}, "VONIX_PORT"),
        ({"LOG_LEVEL": "loud"}, "LOG_LEVEL"),
        ({"VONIX_ENV": "production", "SECRET_KEY": "k" * 40, "VONIX_REPLICAS": "2"}, "DATABASE_URL"),
        (
            {"VONIX_ENV": "production", "SECRET_KEY": "k" * 40, "VONIX_REPLICAS": "2",
             "DATABASE_URL": "postgresql://u@db/vonix"},
            "REDIS_URL",
        ),
    ],
)
def test_invalid_configuration_names_the_variable(values: dict[str, str], variable: str) -> None:
    with pytest.raises(ConfigError) as info:
        settings(**values)
    message = str(info.value)
    assert variable in message
    assert "\n" not in message


def test_production_with_everything_set_is_valid() -> None:
    s = settings(VONIX_ENV="production", SECRET_KEY="k" * 40, VONIX_REPLICAS="2",
                 DATABASE_URL="postgresql://u@db/vonix", REDIS_URL="redis://cache:6379/0")
    assert s.is_production
    assert not s.should_migrate_on_start
    assert s.json_logs
    assert s.secret() == "k" * 40
    assert "k" * 40 not in repr(s)


def test_empty_optional_values_mean_unset() -> None:
    s = settings(SECRET_KEY_PREVIOUS="", SMTP_URL=" ", OAUTH_GOOGLE_CLIENT_ID="")
    assert s.secret_key_previous is None and s.smtp_url is None and s.oauth_google_client_id is None
