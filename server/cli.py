"""`vonix` command line: serve, migrate (and later create-admin, create-bot, maintenance, vapid-keys).

Start-up failures print one line naming what is wrong and exit non-zero (2: configuration,
3: a dependency is unreachable) instead of a traceback wall.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from collections.abc import Awaitable, Callable, Sequence
from pathlib import Path

from server.settings import ConfigError, Settings, load_settings

EXIT_CONFIG = 2
EXIT_UNAVAILABLE = 3
EXIT_BUSY = 4  # maintenance: another replica holds the task's lock

Command = Callable[[argparse.Namespace, Settings], int]


def _fail(message: str, code: int) -> int:
    print(f"vonix: {message}", file=sys.stderr)
    return code


def _preflight(settings: Settings) -> None:
    """Reach the database once (bounded by DB_TIMEOUT) before uvicorn takes over."""
    from server.db.database import Database
    from server.observability.metrics import Metrics

    async def check() -> None:
        db = Database(settings.database, Metrics(), pool_min=1, pool_max=1, timeout=settings.db_timeout)
        await db.connect()
        try:
            await db.ping()
        finally:
            await db.disconnect()

    asyncio.run(check())


def _somaxconn() -> int:
    try:
        return max(2048, int(Path("/proc/sys/net/core/somaxconn").read_text()))
    except (OSError, ValueError):
        return 4096


def cmd_serve(args: argparse.Namespace, settings: Settings) -> int:
    from server.dependency_check import startup_problem

    if (problem := startup_problem()) is not None:  # before importing what builds on their internals
        return _fail(problem, EXIT_CONFIG)
    import uvicorn

    from server.app import create_app
    from server.db import migrate
    from server.db.database import DatabaseUnavailable
    from server.ws_protocol import VonixHttpProtocol, VonixWebSocketProtocol

    try:
        _preflight(settings)
        if settings.should_migrate_on_start:
            migrate.upgrade(settings.database)
    except DatabaseUnavailable as exc:
        return _fail(f"DATABASE_URL: {exc}", EXIT_UNAVAILABLE)
    except Exception as exc:
        return _fail(f"DATABASE_URL: migration failed: {exc.__class__.__name__}: {exc}", EXIT_UNAVAILABLE)

    host = args.host or settings.host
    port = args.port if args.port is not None else settings.port
    # The serve address is part of the settings, so an unset PUBLIC_URL (mail links, OAuth
    # redirects, the allowed websocket origin) follows `--host/--port`.
    settings = settings.model_copy(update={"host": host, "port": port, "migrate_on_start": False})
    try:
        settings.secret()  # development: read or create .vonix-secret now, failing with one clear line
    except ConfigError as exc:
        return _fail(f"configuration error: {exc}", EXIT_CONFIG)
    app = create_app(settings)
    config = uvicorn.Config(
        app,
        host=host,
        port=port,
        log_config=None,
        access_log=False,
        proxy_headers=True,
        forwarded_allow_ips=list(settings.trusted_proxies),
        lifespan="on",
        timeout_graceful_shutdown=int(settings.drain_seconds) + 5,
        server_header=False,
        # After a deploy every member reconnects at once: uvicorn's 2048 overflowed the accept
        # queue, and a dropped SYN is retried after 1, 3, 7, 15 s. The kernel caps it at somaxconn.
        backlog=_somaxconn(),
        # uvloop, but accepting every queued connection each time the listening socket is
        # readable, not one per loop turn (server/eager_accept.py).
        loop="server.eager_accept:new_event_loop",
        ws=VonixWebSocketProtocol,  # uvicorn's websockets-sansio, lighter per idle connection
        http=VonixHttpProtocol,  # uvicorn's httptools, telling the accept loop when a request was read
        ws_max_size=1024 * 1024,  # the app refuses frames over 64 KiB itself, with its own close code
        ws_ping_interval=settings.ws_ping_interval,
        ws_ping_timeout=settings.ws_ping_interval,
        # Compression would run once per subscriber per frame (per-connection deflate contexts):
        # the fan-out path must write the same bytes to everyone without per-subscriber work.
        ws_per_message_deflate=False,
    )
    from server.gc_policy import tune_for_serving
    from server.ops.drain import DrainingServer

    server = DrainingServer(config, app.state.vonix)
    tune_for_serving()
    server.run()
    return 0 if server.started else 1


def cmd_migrate(args: argparse.Namespace, settings: Settings) -> int:
    from server.db import migrate

    url = settings.database
    try:
        if args.action == "up":
            migrate.upgrade(url, args.revision or "head")
        elif args.action == "down":
            migrate.downgrade(url, args.revision or "-1")
        state = migrate.status(url)
    except Exception as exc:
        return _fail(f"DATABASE_URL: {exc.__class__.__name__}: {exc}", EXIT_UNAVAILABLE)
    marker = "at head" if state.at_head else "behind head"
    print(f"database {url.safe}: revision {state.current or '<empty>'} (head {state.head}, {marker})")
    return 0


def cmd_maintenance(args: argparse.Namespace, settings: Settings) -> int:
    """Run maintenance now, under the same per-task lock the in-server scheduler takes."""
    from server.db.database import Database, DatabaseUnavailable
    from server.infra.locks import make_lock
    from server.infra.redis import RedisClients
    from server.observability.metrics import Metrics
    from server.ops.maintenance import TASKS, Maintenance
    from server.ops.scheduler import run_locked

    tasks = list(TASKS) if args.task == "all" else [args.task]

    async def run() -> int:
        metrics = Metrics()
        db = Database(settings.database, metrics, pool_min=1, pool_max=2, timeout=settings.db_timeout)
        redis = None
        if settings.redis_url:
            redis = RedisClients(settings.redis_url, metrics, timeout=settings.redis_timeout, pool_size=2)
        try:
            await db.connect()
            if redis is not None and not await redis.check():
                return _fail(f"REDIS_URL: cannot take the maintenance lock: {redis.last_error}",
                             EXIT_UNAVAILABLE)
            maintenance = Maintenance(db, settings, metrics, instance=f"cli:{settings.instance_id}")
            lock = make_lock(redis)
            code = 0
            for task in tasks:
                result = await run_locked(maintenance, lock, task)
                if result is None:
                    code = _fail(f"maintenance {task}: skipped, another replica holds its lock", EXIT_BUSY)
                elif result.status != "ok":
                    code = _fail(f"maintenance {task}: {result.status} (run {result.run_id}; see the log)", 1)
                else:
                    counts = ", ".join(f"{name}={count}" for name, count in result.counts.items())
                    print(f"maintenance {task}: ok in {result.seconds:.2f}s ({counts})")
            return code
        except DatabaseUnavailable as exc:
            return _fail(f"DATABASE_URL: {exc}", EXIT_UNAVAILABLE)
        finally:
            if redis is not None:
                await redis.close()
            await db.disconnect()

    return asyncio.run(run())


def _with_database(settings: Settings, work: Callable[[object], Awaitable[int]]) -> int:
    """Run `work(db)` against a connected database; one clear line when it is unreachable."""
    from server.db.database import Database, DatabaseUnavailable
    from server.observability.metrics import Metrics

    async def run() -> int:
        db = Database(settings.database, Metrics(), pool_min=1, pool_max=2, timeout=settings.db_timeout)
        await db.connect()
        try:
            return await work(db)
        finally:
            await db.disconnect()

    try:
        return asyncio.run(run())
    except DatabaseUnavailable as exc:
        return _fail(f"DATABASE_URL: {exc}", EXIT_UNAVAILABLE)


def cmd_create_bot(args: argparse.Namespace, settings: Settings) -> int:
    from server.auth.bots import ALLOWED_SCOPES, create_bot
    from server.errors import AppError

    scopes = [s for s in (args.scopes or "").split(",") if s] or None
    unknown = sorted(set(scopes or []) - ALLOWED_SCOPES)
    if unknown:
        return _fail(f"unknown scopes: {', '.join(unknown)} (allowed: {', '.join(sorted(ALLOWED_SCOPES))})", 2)

    async def work(db: object) -> int:
        try:
            bot = await create_bot(db, args.name, scopes, None)  # type: ignore[arg-type]
        except AppError as exc:
            return _fail(exc.message, 1)
        print(f"bot {bot.name} created (id {bot.bot_id}, scopes {','.join(bot.scopes)})")
        print(f"token (shown once, store it now): {bot.token}")
        return 0

    return _with_database(settings, work)


def cmd_create_admin(args: argparse.Namespace, settings: Settings) -> int:
    import getpass
    import os

    from server.auth.passwords import PasswordRejected, Passwords
    from server.db.errors import UniqueViolation
    from server.db.queries import users

    password = os.environ.get("VONIX_ADMIN_PASSWORD") or getpass.getpass("Password for the new admin: ")
    passwords = Passwords(settings.password_min_length)
    try:
        passwords.check_policy(password, username=args.username, email=args.email)
    except PasswordRejected as exc:
        return _fail(f"password refused: {exc}", 2)

    async def work(db: object) -> int:
        from server.db.types import utcnow

        try:
            user_id = await users.insert(db, username=args.username, email=args.email.lower(),  # type: ignore[arg-type]
                                         password_hash=await passwords.hash(password), role="admin",
                                         display_name=args.username, email_verified_at=utcnow())
        except UniqueViolation:
            return _fail("a user with that username or email exists", 1)
        print(f"admin {args.username} created (id {user_id})")
        return 0

    return _with_database(settings, work)


def cmd_vapid_keys(args: argparse.Namespace, settings: Settings) -> int:
    """Print a new VAPID key pair as environment lines (web push, issue 8)."""
    from server.push.vapid import generate

    public, private = generate()
    print(f"VAPID_PUBLIC_KEY={public}")
    print(f"VAPID_PRIVATE_KEY={private}")
    return 0


def cmd_discord_bridge(args: argparse.Namespace, settings: Settings) -> int:
    """Mirror DISCORD_BRIDGE_ROOM and DISCORD_CHANNEL_ID until SIGTERM (docs/bridges.md)."""
    from server.bridges.discord import ConfigMissing
    from server.bridges.discord import main as bridge_main

    try:
        return bridge_main(settings)
    except ConfigMissing as exc:
        return _fail(f"discord-bridge: set {exc}", EXIT_CONFIG)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="vonix", description="Vonix community server")
    sub = parser.add_subparsers(dest="command", required=True)

    serve = sub.add_parser("serve", help="run the HTTP and websocket server")
    serve.add_argument("--host", default=None, help="bind address (default VONIX_HOST or 127.0.0.1)")
    serve.add_argument("--port", type=int, default=None, help="port (default VONIX_PORT or 8000)")
    serve.set_defaults(handler=cmd_serve)

    mig = sub.add_parser("migrate", help="apply, revert or show database migrations")
    mig.add_argument("action", nargs="?", choices=["up", "down", "status"], default="up")
    mig.add_argument("--revision", default=None, help="target revision (up: head, down: -1)")
    mig.set_defaults(handler=cmd_migrate)

    maint = sub.add_parser("maintenance", help="run database maintenance now (takes the task's lock)")
    maint.add_argument("task", nargs="?", default="all",
                       choices=["cleanup", "archive", "vacuum", "mc_status_history", "all"])
    maint.set_defaults(handler=cmd_maintenance)

    bot = sub.add_parser("create-bot", help="create a bot account and print its token (shown once)")
    bot.add_argument("name")
    bot.add_argument("--scopes", default=None, help="comma separated: subscribe,publish,history,presence")
    bot.set_defaults(handler=cmd_create_bot)

    admin = sub.add_parser("create-admin", help="create an admin account (password from a prompt or "
                           "VONIX_ADMIN_PASSWORD)")
    admin.add_argument("username")
    admin.add_argument("email")
    admin.set_defaults(handler=cmd_create_admin)

    vapid = sub.add_parser("vapid-keys", help="print a new VAPID key pair for web push (VAPID_PUBLIC_KEY, "
                           "VAPID_PRIVATE_KEY)")
    vapid.set_defaults(handler=cmd_vapid_keys)

    discord = sub.add_parser("discord-bridge", help="mirror a room and a Discord channel until SIGTERM "
                             "(DISCORD_* and BRIDGE_* settings; docs/bridges.md)")
    discord.set_defaults(handler=cmd_discord_bridge)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        settings = load_settings()
    except ConfigError as exc:
        return _fail(f"configuration error: {exc}", EXIT_CONFIG)
    from server.observability.logging import configure_logging

    configure_logging(settings.log_level, settings.json_logs)
    handler: Command = args.handler
    try:
        return handler(args, settings)
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
