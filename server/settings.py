"""One immutable settings object, built once from the environment (and an optional `.env`).

Everything configurable lives here so that start-up can validate it all at once and refuse to run
with a dangerous combination (production without a secret, several replicas on SQLite) before any
resource is opened. The object is passed into `create_app`; nothing reads the environment later.
"""

from __future__ import annotations

import secrets
from enum import StrEnum
from pathlib import Path
from typing import Annotated, Any, Literal
from urllib.parse import urlsplit

from pydantic import Field, PrivateAttr, SecretStr, ValidationError, field_validator, model_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

from server.db.urls import DatabaseUrl, InvalidDatabaseUrl, parse_database_url


class ConfigError(Exception):
    """A setting is missing or invalid; the message names the variable and fits on one line."""


class Environment(StrEnum):
    DEVELOPMENT = "development"
    TEST = "test"
    PRODUCTION = "production"


def _split_list(value: Any) -> Any:
    if isinstance(value, str):
        return [item.strip() for item in value.split(",") if item.strip()]
    return value


CommaList = Annotated[list[str], NoDecode]


class Settings(BaseSettings):
    """Every variable Vonix reads. The README's configuration table mirrors this class."""

    model_config = SettingsConfigDict(
        env_file=".env",
        env_file_encoding="utf-8",
        frozen=True,
        extra="ignore",
        case_sensitive=False,
        populate_by_name=True,
    )

    env: Environment = Field(default=Environment.DEVELOPMENT, validation_alias="VONIX_ENV")
    secret_key: SecretStr | None = Field(default=None, validation_alias="SECRET_KEY")
    database_url: str = Field(default="sqlite:///./vonix.db", validation_alias="DATABASE_URL")
    redis_url: str | None = Field(default=None, validation_alias="REDIS_URL")
    replicas: int = Field(default=1, ge=1, validation_alias="VONIX_REPLICAS")
    instance_id: str = Field(
        default_factory=lambda: secrets.token_hex(4), validation_alias="VONIX_INSTANCE_ID"
    )

    host: str = Field(default="127.0.0.1", validation_alias="VONIX_HOST")
    port: int = Field(default=8000, ge=0, le=65535, validation_alias="VONIX_PORT")
    # Unset: the serve address (see the `public_url` property), so mail links follow `--port`.
    public_url_setting: str | None = Field(default=None, validation_alias="PUBLIC_URL")

    log_level: str = Field(default="INFO", validation_alias="LOG_LEVEL")
    log_format: str = Field(default="auto", validation_alias="LOG_FORMAT")

    max_body_bytes: int = Field(default=1024 * 1024, ge=1024, validation_alias="MAX_BODY_BYTES")
    migrate_on_start: bool | None = Field(default=None, validation_alias="MIGRATE_ON_START")

    db_pool_min: int = Field(default=1, ge=1, validation_alias="DB_POOL_MIN")
    db_pool_max: int = Field(default=10, ge=1, validation_alias="DB_POOL_MAX")
    db_timeout: float = Field(default=5.0, gt=0, validation_alias="DB_TIMEOUT")
    slow_query_ms: float = Field(default=500.0, gt=0, validation_alias="SLOW_QUERY_MS")

    redis_timeout: float = Field(default=1.0, gt=0, validation_alias="REDIS_TIMEOUT")
    redis_health_interval: float = Field(default=5.0, gt=0, validation_alias="REDIS_HEALTH_INTERVAL")
    redis_pool_size: int = Field(default=50, ge=2, validation_alias="REDIS_POOL_SIZE")
    redis_cluster: bool = Field(default=False, validation_alias="REDIS_CLUSTER")

    trusted_proxies: CommaList = Field(default_factory=lambda: ["127.0.0.1", "::1"],
                                       validation_alias="TRUSTED_PROXIES")
    allowed_origins: CommaList = Field(default_factory=list, validation_alias="ALLOWED_ORIGINS")
    drain_seconds: float = Field(default=10.0, ge=0, validation_alias="DRAIN_SECONDS")
    # After a deploy everyone reconnects at once: at most this many connections are served their
    # first exchange side by side; the rest wait in arrival order (server/eager_accept.py).
    accept_opening_limit: int = Field(default=256, ge=1, validation_alias="ACCEPT_OPENING_LIMIT")
    accept_opening_seconds: float = Field(default=2.0, gt=0, validation_alias="ACCEPT_OPENING_SECONDS")
    static_dir: str | None = Field(default=None, validation_alias="STATIC_DIR")
    # --- people (issue 16) ---
    media_dir: str = Field(default="./media", validation_alias="MEDIA_DIR")
    avatar_max_bytes: int = Field(default=2 * 1024 * 1024, ge=1024, validation_alias="AVATAR_MAX_BYTES")
    # --- community (issue 17) ---
    post_image_max_bytes: int = Field(default=8 * 1024 * 1024, ge=1024, validation_alias="POST_IMAGE_MAX_BYTES")
    # the day's first sign-in or session refresh earns +5 XP and a streak bonus
    xp_daily_login: bool = Field(default=True, validation_alias="XP_DAILY_LOGIN")
    event_reminder_minutes: int = Field(default=60, ge=1, validation_alias="EVENT_REMINDER_MINUTES")
    # "{uuid}", "{name}" and "{size}" are filled in; empty: no Minecraft heads (initials instead)
    minecraft_avatar_url: str = Field(default="https://mc-heads.net/avatar/{uuid}/{size}",
                                      validation_alias="MINECRAFT_AVATAR_URL")

    # --- Minecraft (issue 18) ---
    # how often the game servers are pinged (one replica polls at a time)
    mc_status_interval: int = Field(default=30, ge=5, validation_alias="MC_STATUS_INTERVAL")
    mc_status_timeout: float = Field(default=5.0, gt=0, validation_alias="MC_STATUS_TIMEOUT")
    # per-poll rows kept this long (hourly summaries beyond 48 h; the 7-day chart needs >= 7)
    mc_status_retention_days: int = Field(default=30, ge=7, validation_alias="MC_STATUS_RETENTION_DAYS")
    # --- Discord bridge (issue 18): read by the `vonix discord-bridge` process only ---
    discord_bridge_room: str = Field(default="", validation_alias="DISCORD_BRIDGE_ROOM")
    discord_channel_id: str = Field(default="", pattern=r"^[0-9]*$", validation_alias="DISCORD_CHANNEL_ID")
    discord_bot_token: SecretStr | None = Field(default=None, validation_alias="DISCORD_BOT_TOKEN")
    discord_webhook_url: SecretStr | None = Field(default=None, validation_alias="DISCORD_WEBHOOK_URL")
    discord_api_url: str = Field(default="https://discord.com/api/v10", validation_alias="DISCORD_API_URL")
    discord_gateway_url: str = Field(default="wss://gateway.discord.gg/?v=10&encoding=json",
                                     validation_alias="DISCORD_GATEWAY_URL")
    bridge_server_url: str = Field(default="http://127.0.0.1:8000", validation_alias="BRIDGE_SERVER_URL")
    bridge_bot_token: SecretStr | None = Field(default=None, validation_alias="BRIDGE_BOT_TOKEN")

    # --- maintenance (issue 3) ---
    maintenance_enabled: bool = Field(default=True, validation_alias="MAINTENANCE_ENABLED")
    maintenance_cleanup_interval: float = Field(
        default=86400.0, gt=0, validation_alias="MAINTENANCE_CLEANUP_INTERVAL"
    )
    maintenance_archive_interval: float = Field(
        default=3600.0, gt=0, validation_alias="MAINTENANCE_ARCHIVE_INTERVAL"
    )
    maintenance_vacuum_interval: float = Field(
        default=604800.0, gt=0, validation_alias="MAINTENANCE_VACUUM_INTERVAL"
    )
    maintenance_first_delay: float = Field(default=120.0, ge=0, validation_alias="MAINTENANCE_FIRST_DELAY")
    maintenance_batch_size: int = Field(
        default=1000, ge=1, le=10000, validation_alias="MAINTENANCE_BATCH_SIZE"
    )
    archive_after_days: int = Field(default=90, ge=1, validation_alias="ARCHIVE_AFTER_DAYS")

    # --- observability and resilience (issue 7) ---
    breaker_failure_threshold: int = Field(default=5, ge=1, validation_alias="BREAKER_FAILURE_THRESHOLD")
    breaker_reset_timeout: float = Field(default=30.0, gt=0, validation_alias="BREAKER_RESET_TIMEOUT")
    breaker_call_timeout: float = Field(default=10.0, gt=0, validation_alias="BREAKER_CALL_TIMEOUT")
    alert_webhook_urls: CommaList = Field(default_factory=list, validation_alias="ALERT_WEBHOOK_URLS")
    alert_interval: float = Field(default=15.0, gt=0, validation_alias="ALERT_INTERVAL")
    alert_cooldown: float = Field(default=900.0, ge=0, validation_alias="ALERT_COOLDOWN")
    alert_error_count: int = Field(default=10, ge=1, validation_alias="ALERT_ERROR_COUNT")
    alert_error_window: float = Field(default=300.0, gt=0, validation_alias="ALERT_ERROR_WINDOW")
    alert_error_rate: float = Field(default=0.05, gt=0, le=1, validation_alias="ALERT_ERROR_RATE")
    alert_p99_seconds: float = Field(default=1.0, gt=0, validation_alias="ALERT_P99_SECONDS")
    otel_exporter_otlp_endpoint: str | None = Field(default=None, validation_alias="OTEL_EXPORTER_OTLP_ENDPOINT")
    otel_service_name: str = Field(default="vonix", validation_alias="OTEL_SERVICE_NAME")
    client_error_max_bytes: int = Field(default=16384, ge=512, validation_alias="CLIENT_ERROR_MAX_BYTES")

    # --- realtime (issue 5) ---
    ws_auth_timeout: float = Field(default=10.0, gt=0, validation_alias="WS_AUTH_TIMEOUT")
    ws_max_subscriptions: int = Field(default=100, ge=1, validation_alias="WS_MAX_SUBSCRIPTIONS")
    ws_max_connections_per_user: int = Field(default=20, ge=1, validation_alias="WS_MAX_CONNECTIONS_PER_USER")
    # Guest (signed-out) sockets per client IP on each replica; 0 admits no guests (server/guest_limit.py).
    ws_max_guests_per_ip: int = Field(default=20, ge=0, validation_alias="WS_MAX_GUESTS_PER_IP")
    ws_max_queue_bytes: int = Field(default=1024 * 1024, ge=4096, validation_alias="WS_MAX_QUEUE_BYTES")
    ws_coalesce_ms: float = Field(default=2.0, ge=0, validation_alias="WS_COALESCE_MS")
    ws_commit_window_ms: float = Field(default=10.0, ge=0, validation_alias="WS_COMMIT_WINDOW_MS")
    ws_publish_rate: float = Field(default=10.0, gt=0, validation_alias="WS_PUBLISH_RATE")
    ws_publish_burst: float = Field(default=20.0, ge=1, validation_alias="WS_PUBLISH_BURST")
    ws_ping_interval: float = Field(default=20.0, gt=0, validation_alias="WS_PING_INTERVAL")
    ws_history_size: int = Field(default=1000, ge=10, validation_alias="WS_HISTORY_SIZE")
    ws_history_ttl: int = Field(default=86400, ge=60, validation_alias="WS_HISTORY_TTL")
    ws_max_recovery: int = Field(default=1000, ge=10, validation_alias="WS_MAX_RECOVERY")
    ws_recent_frames: int = Field(default=128, ge=0, le=10000, validation_alias="WS_RECENT_FRAMES")
    presence_ttl: float = Field(default=45.0, gt=1, validation_alias="PRESENCE_TTL")
    ws_presence_interval_ms: float = Field(default=200.0, ge=0, validation_alias="WS_PRESENCE_INTERVAL_MS")
    presence_heartbeat: float = Field(default=15.0, gt=0, validation_alias="PRESENCE_HEARTBEAT")
    presence_sweep: float = Field(default=10.0, gt=0, validation_alias="PRESENCE_SWEEP")

    # --- accounts and security (issue 4) ---
    secret_key_previous: SecretStr | None = Field(default=None, validation_alias="SECRET_KEY_PREVIOUS")
    access_token_ttl: int = Field(default=900, ge=2, validation_alias="ACCESS_TOKEN_TTL")
    refresh_token_ttl: int = Field(default=30 * 86400, ge=300, validation_alias="REFRESH_TOKEN_TTL")
    mfa_ticket_ttl: int = Field(default=300, ge=30, validation_alias="MFA_TICKET_TTL")
    password_min_length: int = Field(default=10, ge=8, validation_alias="PASSWORD_MIN_LENGTH")
    lockout_threshold: int = Field(default=5, ge=1, validation_alias="LOCKOUT_THRESHOLD")
    lockout_window: int = Field(default=900, ge=1, validation_alias="LOCKOUT_WINDOW")
    lockout_duration: int = Field(default=900, ge=1, validation_alias="LOCKOUT_DURATION")
    ip_failure_limit: int = Field(default=20, ge=1, validation_alias="IP_FAILURE_LIMIT")
    reset_token_ttl: int = Field(default=1800, ge=60, validation_alias="RESET_TOKEN_TTL")
    require_verified_email: bool = Field(default=False, validation_alias="REQUIRE_VERIFIED_EMAIL")
    cookie_secure: bool | None = Field(default=None, validation_alias="COOKIE_SECURE")
    smtp_url: SecretStr | None = Field(default=None, validation_alias="SMTP_URL")
    mail_from: str = Field(default="Vonix <no-reply@vonix.local>", validation_alias="MAIL_FROM")
    smtp_timeout: float = Field(default=10.0, gt=0, validation_alias="SMTP_TIMEOUT")
    oauth_google_client_id: str | None = Field(default=None, validation_alias="OAUTH_GOOGLE_CLIENT_ID")
    oauth_google_client_secret: SecretStr | None = Field(
        default=None, validation_alias="OAUTH_GOOGLE_CLIENT_SECRET")
    oauth_google_discovery_url: str = Field(
        default="https://accounts.google.com/.well-known/openid-configuration",
        validation_alias="OAUTH_GOOGLE_DISCOVERY_URL")
    oauth_discord_client_id: str | None = Field(default=None, validation_alias="OAUTH_DISCORD_CLIENT_ID")
    oauth_discord_client_secret: SecretStr | None = Field(
        default=None, validation_alias="OAUTH_DISCORD_CLIENT_SECRET")
    oauth_discord_base_url: str = Field(default="https://discord.com", validation_alias="OAUTH_DISCORD_BASE_URL")
    oauth_timeout: float = Field(default=10.0, gt=0, validation_alias="OAUTH_TIMEOUT")

    # --- passkeys (issue 20; server/auth/passkeys.py) ---
    # Unset: the host / the origin of PUBLIC_URL. The RP ID is a registrable domain the origins sit
    # under; a passkey is bound to it for good, so changing it orphans every registered passkey.
    webauthn_rp_id_setting: str | None = Field(default=None, validation_alias="WEBAUTHN_RP_ID")
    webauthn_rp_name: str = Field(default="Vonix", min_length=1, max_length=64, validation_alias="WEBAUTHN_RP_NAME")
    webauthn_origins_setting: CommaList = Field(default_factory=list, validation_alias="WEBAUTHN_ORIGINS")
    webauthn_challenge_ttl: int = Field(default=300, ge=30, le=900, validation_alias="WEBAUTHN_CHALLENGE_TTL")

    @field_validator("webauthn_rp_id_setting", mode="before")
    @classmethod
    def _webauthn_rp_id(cls, value: Any) -> Any:
        if isinstance(value, str):
            value = value.strip().lower() or None
        if value is not None and ("/" in value or ":" in value):
            raise ValueError("must be a bare host name such as vonix.example.org (no scheme or port)")
        return value

    @field_validator("webauthn_origins_setting", mode="before")
    @classmethod
    def _webauthn_origins(cls, value: Any) -> Any:
        origins = _split_list(value)
        for origin in origins if isinstance(origins, list) else []:
            if not str(origin).startswith(("https://", "http://")) or str(origin).count("/") != 2:
                raise ValueError(f"{origin!r} is not an origin (scheme://host[:port], no path)")
        return origins

    @property
    def webauthn_rp_id(self) -> str:
        """WEBAUTHN_RP_ID, else PUBLIC_URL's host; a loopback address becomes `localhost`, because
        browsers refuse IP addresses as RP IDs (so in development open http://localhost:8000)."""
        from urllib.parse import urlsplit

        host = urlsplit(self.public_url).hostname or "localhost"
        return self.webauthn_rp_id_setting or ("localhost" if host in ("127.0.0.1", "::1") else host)

    @property
    def webauthn_origins(self) -> list[str]:
        """WEBAUTHN_ORIGINS, else PUBLIC_URL's origin (loopback as localhost): what a browser's
        clientDataJSON must name."""
        if self.webauthn_origins_setting:
            return [origin.rstrip("/") for origin in self.webauthn_origins_setting]
        from urllib.parse import urlsplit

        parts = urlsplit(self.public_url)
        host = parts.hostname or "localhost"
        netloc = f"localhost:{parts.port}" if host in ("127.0.0.1", "::1") and parts.port else parts.netloc
        return [f"{parts.scheme}://{netloc}"]

    # --- cache and rate limits (issue 6) ---
    cache_enabled: bool = Field(default=True, validation_alias="CACHE_ENABLED")
    cache_max_entries: int = Field(default=10000, ge=1, validation_alias="CACHE_MAX_ENTRIES")
    cache_ttl: float = Field(default=60.0, gt=0, validation_alias="CACHE_TTL")
    cache_stale_ttl: float = Field(default=300.0, ge=0, validation_alias="CACHE_STALE_TTL")
    cache_principal_ttl: float = Field(default=30.0, gt=0, validation_alias="CACHE_PRINCIPAL_TTL")
    cache_preload: str = Field(default="channel:room:general", validation_alias="CACHE_PRELOAD")
    rate_limit_enabled: bool = Field(default=True, validation_alias="RATE_LIMIT_ENABLED")
    # HTTP limits by what they protect (server/ratelimit/classes.py): sign-in and account changes,
    # writes, and reads. Reads are generous so that a client's normal use can never exhaust them.
    rate_limit_auth: str = Field(default="30/300", validation_alias="RATE_LIMIT_AUTH")
    rate_limit_write: str = Field(default="120/60+60", validation_alias="RATE_LIMIT_WRITE")
    rate_limit_read: str = Field(default="600/60+300", validation_alias="RATE_LIMIT_READ")
    rate_limit_routes: str = Field(default="", validation_alias="RATE_LIMIT_ROUTES")
    rate_limit_actions: str = Field(default="post=30/60,friend_request=20/3600,reaction=60/60",
                                    validation_alias="RATE_LIMIT_ACTIONS")

    @field_validator("rate_limit_auth", "rate_limit_write", "rate_limit_read", "rate_limit_routes",
                     "rate_limit_actions")
    @classmethod
    def _limits(cls, value: str, info: Any) -> str:
        from server.ratelimit.rules import InvalidLimit, parse_actions, parse_limit, parse_routes

        name = info.field_name.removeprefix("rate_limit_")
        parse = {"routes": parse_routes, "actions": parse_actions}.get(name, lambda v: parse_limit(name, v))
        try:
            parse(value)
        except InvalidLimit as exc:
            raise ValueError(str(exc)) from None
        return value

    @property
    def cache_preload_keys(self) -> list[str]:
        return [key.strip() for key in self.cache_preload.split(",") if key.strip()]

    # --- PWA, notifications and web push (issue 8) ---
    vapid_public_key: str | None = Field(default=None, validation_alias="VAPID_PUBLIC_KEY")
    vapid_private_key: SecretStr | None = Field(default=None, validation_alias="VAPID_PRIVATE_KEY")
    vapid_subject: str = Field(default="mailto:admin@vonix.local", validation_alias="VAPID_SUBJECT")
    push_when: Literal["offline", "always", "never"] = Field(default="offline", validation_alias="PUSH_WHEN")
    push_ttl: int = Field(default=86400, ge=0, le=2419200, validation_alias="PUSH_TTL")
    push_timeout: float = Field(default=10.0, gt=0, validation_alias="PUSH_TIMEOUT")
    push_retries: int = Field(default=3, ge=0, le=10, validation_alias="PUSH_RETRIES")
    push_retry_backoff: float = Field(default=1.0, ge=0, validation_alias="PUSH_RETRY_BACKOFF")

    @field_validator("vapid_public_key", "vapid_private_key", mode="before")
    @classmethod
    def _vapid_empty_is_unset(cls, value: Any) -> Any:
        return None if isinstance(value, str) and not value.strip() else value

    @field_validator("vapid_subject")
    @classmethod
    def _vapid_subject(cls, value: str) -> str:
        if not value.startswith(("mailto:", "https://")):
            raise ValueError("must be a mailto: or https:// URL the push services can contact")
        return value

    @model_validator(mode="after")
    def _vapid_pair(self) -> Settings:
        """Both VAPID keys or neither, and the public key must belong to the private one."""
        if (self.vapid_public_key is None) != (self.vapid_private_key is None):
            raise ValueError("VAPID_PUBLIC_KEY and VAPID_PRIVATE_KEY must be set together (vonix vapid-keys)")
        if self.vapid_private_key is not None:
            from server.push.vapid import InvalidVapidKey, load_private, public_key_of

            try:
                key = load_private(self.vapid_private_key.get_secret_value())
            except InvalidVapidKey as exc:
                raise ValueError(f"VAPID_PRIVATE_KEY: {exc}") from None
            if public_key_of(key) != (self.vapid_public_key or "").strip().rstrip("="):
                raise ValueError("VAPID_PUBLIC_KEY does not belong to VAPID_PRIVATE_KEY")
        return self

    @field_validator("secret_key", "secret_key_previous", "smtp_url", "oauth_google_client_id",
                     "oauth_google_client_secret", "oauth_discord_client_id", "oauth_discord_client_secret",
                     "static_dir", "otel_exporter_otlp_endpoint", "public_url_setting", mode="before")
    @classmethod
    def _empty_is_unset(cls, value: Any) -> Any:
        """`VAR=` in an env file or a chart means "not set", never an empty secret or URL."""
        return None if isinstance(value, str) and not value.strip() else value

    @field_validator("trusted_proxies", "allowed_origins", "alert_webhook_urls", mode="before")
    @classmethod
    def _lists(cls, value: Any) -> Any:
        return _split_list(value)

    @field_validator("log_level")
    @classmethod
    def _level(cls, value: str) -> str:
        level = value.upper()
        if level not in {"DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"}:
            raise ValueError("must be one of DEBUG, INFO, WARNING, ERROR, CRITICAL")
        return level

    @field_validator("log_format")
    @classmethod
    def _format(cls, value: str) -> str:
        if value not in {"auto", "json", "console"}:
            raise ValueError("must be auto, json or console")
        return value

    @field_validator("database_url")
    @classmethod
    def _database_url(cls, value: str) -> str:
        try:
            parse_database_url(value)
        except InvalidDatabaseUrl as exc:
            raise ValueError(str(exc)) from None
        return value

    @field_validator("redis_url")
    @classmethod
    def _redis_url(cls, value: str | None) -> str | None:
        if value in (None, ""):
            return None
        if not value.startswith(("redis://", "rediss://", "unix://")):
            raise ValueError("must start with redis://, rediss:// or unix://")
        return value

    @model_validator(mode="after")
    def _redis_cluster_rules(self) -> Settings:
        """Refused at start, not on the first command: a cluster client takes no database number
        and no unix socket, and without REDIS_URL there is nothing to discover the cluster from."""
        if self.redis_cluster:
            if self.redis_url is None:
                raise ValueError("REDIS_CLUSTER=true needs REDIS_URL (any node of the cluster)")
            parsed = urlsplit(self.redis_url)
            if parsed.scheme not in ("redis", "rediss"):
                raise ValueError("REDIS_URL: a Redis Cluster is reached over redis:// or rediss://")
            if parsed.path.strip("/") not in ("", "0"):
                raise ValueError("REDIS_URL: a Redis Cluster has only database 0")
        return self

    @model_validator(mode="after")
    def _production_rules(self) -> Settings:
        if self.env is Environment.PRODUCTION:
            if self.secret_key is None or len(self.secret_key.get_secret_value()) < 32:
                raise ValueError("SECRET_KEY must be set (32+ characters) when VONIX_ENV=production")
            if self.replicas > 1 and self.database.is_sqlite:
                raise ValueError(
                    "DATABASE_URL: SQLite cannot serve VONIX_REPLICAS>1; use postgresql://"
                )
            if self.replicas > 1 and self.redis_url is None:
                raise ValueError(
                    "REDIS_URL must be set when VONIX_REPLICAS>1: the in-process broker cannot "
                    "reach other replicas"
                )
        return self

    # --- derived values -------------------------------------------------------------------
    _development_secret: str = PrivateAttr(default="")

    @property
    def database(self) -> DatabaseUrl:
        return parse_database_url(self.database_url)

    @property
    def media_path(self) -> Path:
        """Uploaded media (avatars): a local directory, or a mounted volume / object store."""
        return Path(self.media_dir)

    @property
    def static_path(self) -> Path:
        """The PWA files: `STATIC_DIR`, else `static/` beside the `server` package."""
        if self.static_dir:
            return Path(self.static_dir)
        return Path(__file__).resolve().parent.parent / "static"

    @property
    def secure_cookies(self) -> bool:
        if self.cookie_secure is not None:
            return self.cookie_secure
        return self.env is Environment.PRODUCTION

    @property
    def is_production(self) -> bool:
        return self.env is Environment.PRODUCTION

    @property
    def should_migrate_on_start(self) -> bool:
        if self.migrate_on_start is not None:
            return self.migrate_on_start
        return self.env is not Environment.PRODUCTION

    @property
    def json_logs(self) -> bool:
        if self.log_format == "auto":
            return self.env is Environment.PRODUCTION
        return self.log_format == "json"

    @property
    def public_url(self) -> str:
        """`PUBLIC_URL`, else the address `vonix serve` listens on (`--host/--port`, VONIX_HOST/PORT)."""
        if self.public_url_setting:
            return self.public_url_setting
        host = "127.0.0.1" if self.host in ("", "0.0.0.0", "::") else self.host  # noqa: S104
        if ":" in host and not host.startswith("["):
            host = f"[{host}]"  # an IPv6 literal
        return f"http://{host}:{self.port}"

    def secret(self) -> str:
        """The signing secret: SECRET_KEY; else, in development, the key kept in `.vonix-secret`
        in the working directory (server/dev_secret.py: 2FA and sessions survive restarts); else
        (tests) a random key per settings object. Production refuses to start without SECRET_KEY.
        """
        if self.secret_key is not None:
            return self.secret_key.get_secret_value()
        if not self._development_secret:  # development: read or create the file on first use only
            from server.dev_secret import DevSecretError, load_or_create

            try:
                key = load_or_create()
            except DevSecretError as exc:
                raise ConfigError(f"SECRET_KEY: {exc}") from None
            except OSError as exc:
                raise ConfigError(f"SECRET_KEY: unset, and the development key file cannot be kept in "
                                  f"the working directory ({exc.strerror}); set SECRET_KEY") from None
            object.__setattr__(self, "_development_secret", key)
        return self._development_secret

    def model_post_init(self, context: Any, /) -> None:
        # Tests get a random in-memory key (never a file in the repository); development reads or
        # creates its key file lazily in `secret()`, so commands that sign nothing write nothing.
        if self.env is Environment.TEST:
            object.__setattr__(self, "_development_secret", secrets.token_urlsafe(48))


_ALIASES = {name: (field.validation_alias or name) for name, field in Settings.model_fields.items()}


def load_settings(**overrides: Any) -> Settings:
    """Build settings from the environment; raise ConfigError with one readable line on failure."""
    try:
        return Settings(**overrides)
    except ValidationError as exc:
        raise ConfigError(_one_line(exc)) from None


def _one_line(exc: ValidationError) -> str:
    parts = []
    for error in exc.errors():
        location = error.get("loc") or ()
        message = str(error.get("msg", "invalid value")).removeprefix("Value error, ")
        if location:
            field = str(location[0])
            variable = _ALIASES.get(field, field.upper())
            parts.append(f"{str(variable).upper()}: {message}")
        else:
            parts.append(message)
    return "; ".join(parts)
