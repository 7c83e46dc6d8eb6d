"""Game accounts linked to members, and what the game chat bridge tells the status (issue 18;
docs/plugins.md).

Link codes: a game server's plugin asks for one for a player (`POST /api/plugin/link-codes`);
6 characters from an alphabet without look-alikes (no 0/O, 1/I/L), valid 10 minutes, one live
code per player (a new request replaces the old one: one row per UUID), single use, stored as
their SHA-256. A member enters the code on the site to link their account, or signs up with it (a
new account, its username pre-filled with the Minecraft name when free).

Guessing is limited twice, with the app's own machinery: every attempt counts against the rate
limiter (per member and per IP, shared by replicas in scaled mode), and every wrong code is a
failed attempt of the password lockout (server/auth/lockout.py): under the name `mclink:<user id>`
for a member (`mclink-ip:<ip>` when signing up) and under the IP, so five wrong codes lock the
member's linking for the lockout duration, and an IP guessing for many accounts is locked out like
an IP guessing passwords.

The game chat bridge: a game server's bot publishes the players' chat and events in a room. When
a message with `system` join or leave from a game server's bot is stored, the status service hears
it (`mc_status.game_event`), in the order they were stored; when the bot's last connection on a
replica goes away, the status goes back to poll samples (`bridge_offline`).
"""

from __future__ import annotations

import re
import secrets
from collections import deque
from datetime import timedelta
from typing import Any

import sqlalchemy as sa

from server.auth import audit
from server.auth.mailed_tokens import mail_after_signup
from server.auth.passwords import PasswordRejected
from server.auth.sessions import ClientInfo
from server.auth.tokens import hash_secret
from server.db.errors import UniqueViolation
from server.db.queries import users as user_queries
from server.db.tables import ranks, users
from server.db.tables_linking import mc_api_keys, mc_link_codes
from server.db.types import utcnow
from server.errors import AppError, Conflict, RateLimited, ValidationFailed
from server.minecraft import keys
from server.observability.logging import get_logger
from server.ratelimit import Rule

log = get_logger("vonix.minecraft.linking")

CODE_ALPHABET = "ABCDEFGHJKMNPQRSTUVWXYZ23456789"  # no 0/O, 1/I/L
CODE_LENGTH = 6
CODE_TTL = timedelta(minutes=10)
MINECRAFT_NAME = re.compile(r"[A-Za-z0-9_]{3,16}")
UUID = re.compile(r"[0-9a-f]{32}")
HEAD_SIZE = 64
# Every attempt at a code (right or wrong) counts here; wrong ones also count in the lockout.
PER_MEMBER = Rule("mc_link:user", 10, 300)
PER_IP = Rule("mc_link:ip", 30, 300)
PER_PLAYER = Rule("mc_link:code", 6, 60)  # codes asked for one player (a plugin looping on /link)
BRIDGE_EVENTS = ("join", "leave")


class LinkLocked(AppError):
    status, code, message = 429, "link_locked", "Too many wrong codes; try again later."


def normalise_uuid(value: str) -> str | None:
    """Dashed or not, any case -> dashed lower case; None when it is not a UUID."""
    compact = value.strip().lower().replace("-", "")
    if not UUID.fullmatch(compact) or (len(value.strip()) not in (32, 36)):
        return None
    return f"{compact[:8]}-{compact[8:12]}-{compact[12:16]}-{compact[16:20]}-{compact[20:]}"


def normalise_code(value: str) -> str:
    """What the member typed -> the code: case, spaces and dashes do not matter."""
    return re.sub(r"[\s-]+", "", value).upper()


def new_code() -> str:
    return "".join(secrets.choice(CODE_ALPHABET) for _ in range(CODE_LENGTH))


def _iso(value: Any) -> str:
    return str(value.isoformat().replace("+00:00", "Z"))


def _wrong_code() -> ValidationFailed:
    return ValidationFailed("That code is wrong, used or expired.", details=[{
        "field": "code", "code": "invalid_code",
        "message": "That code is wrong, used or expired: type /link in game for a new one (codes last 10 minutes)."}])


class LinkService:
    def __init__(self, resources: Any, settings: Any) -> None:
        self.resources = resources
        self.settings = settings
        self._servers_of_bots: dict[int, int | None] = {}  # bot user id -> game server id (never changes)
        self._events: deque[tuple[int, str, str | None]] = deque()  # (game server id, event, player)
        self._draining = False

    @property
    def db(self) -> Any:
        return self.resources.db

    # --- the plugin -------------------------------------------------------------------------------
    async def request_code(self, server_id: int, name: str, uuid: str) -> dict[str, Any]:
        """A new code for the player, replacing any earlier one (used or not)."""
        limiter = self.resources.limiter
        if limiter is not None and limiter.enabled:
            decision = await limiter.hit(PER_PLAYER, f"player:{uuid}")
            if not decision.allowed:
                raise RateLimited("Too many codes asked for this player; wait a minute.", headers=decision.headers())
        for _ in range(5):
            code = new_code()
            now = utcnow()
            try:
                async with self.db.transaction():
                    await self.db.execute("mc_codes.replace", mc_link_codes.delete().where(
                        mc_link_codes.c.minecraft_uuid == uuid))
                    await self.db.execute("mc_codes.insert", mc_link_codes.insert().values(
                        code_hash=hash_secret(code), server_id=server_id, minecraft_name=name,
                        minecraft_uuid=uuid, created_at=now, expires_at=now + CODE_TTL))
            except UniqueViolation:  # the same code as another row, or two requests at once: again
                continue
            return {"code": code, "expires_at": _iso(now + CODE_TTL), "name": name, "uuid": uuid}
        raise Conflict("Could not make a code; try again.", code="code_busy")

    async def player(self, uuid: str) -> dict[str, Any]:
        row = await self.db.fetch_one("users.by_minecraft_uuid", sa.select(
            users.c.id, users.c.username, users.c.status, ranks.c.name, ranks.c.colour, ranks.c.badge,
        ).select_from(users.outerjoin(ranks, ranks.c.id == users.c.rank_id)).where(users.c.minecraft_uuid == uuid))
        if row is None or row["status"] == "deleted":
            return {"linked": False, "user": None}
        user: dict[str, Any] = {"id": row["id"], "username": row["username"]}
        if row["name"] is not None:
            user["rank"] = {"name": row["name"], "colour": row["colour"], "badge": row["badge"]}
        return {"linked": True, "user": user}

    # --- guessing ---------------------------------------------------------------------------------
    async def _guard(self, subject: str, user_id: int | None, ip: str | None) -> None:
        """Before looking at a code: the rate limits, then the lockout."""
        limiter = self.resources.limiter
        if limiter is not None and limiter.enabled:
            counted = [(PER_MEMBER, f"user:{user_id}")] if user_id is not None else []
            counted += [(PER_IP, f"ip:{ip}")] if ip else []
            for rule, key in counted:
                decision = await limiter.hit(rule, key)
                if not decision.allowed:
                    raise RateLimited("Too many tries at a link code; wait a little.", headers=decision.headers())
        lock = await self.resources.auth.lockout.active(None, subject, ip)
        if lock is not None:
            raise LinkLocked("Too many wrong codes; linking is locked for a while. Ask for a new code later.",
                             headers={"Retry-After": str(lock.retry_after)})

    async def _live_code(self, code: str, subject: str, ip: str | None) -> Any:
        """The code's row while it can be used; a wrong one counts as a failed attempt (and raises)."""
        code = normalise_code(code)
        row = None
        if len(code) == CODE_LENGTH and all(c in CODE_ALPHABET for c in code):
            row = await self.db.fetch_one("mc_codes.by_hash", sa.select(mc_link_codes).where(
                mc_link_codes.c.code_hash == hash_secret(code)))
        if row is None or row["used_at"] is not None or row["expires_at"] <= utcnow():
            lock = await self.resources.auth.lockout.record(None, subject, ip, success=False)
            if lock is not None:
                await audit.record(self.db, "minecraft.link_locked", target_type="lockout", target_id=subject, ip=ip)
            raise _wrong_code()
        return row

    async def _claim(self, row: Any, user_id: int) -> bool:
        """Spend the code (single use, even when two replicas race)."""
        claimed = await self.db.fetch_val("mc_codes.claim", mc_link_codes.update().where(
            mc_link_codes.c.id == row["id"], mc_link_codes.c.used_at.is_(None),
            mc_link_codes.c.expires_at > utcnow()).values(used_at=utcnow(), used_by=user_id).returning(
            mc_link_codes.c.id))
        return claimed is not None

    async def _owner_of(self, uuid: str) -> Any:
        return await self.db.fetch_one("users.by_minecraft_uuid", sa.select(users.c.id, users.c.username).where(
            users.c.minecraft_uuid == uuid))

    # --- members ----------------------------------------------------------------------------------
    async def link(self, user_id: int, code: str, ip: str | None) -> dict[str, Any]:
        subject = f"mclink:{user_id}"
        await self._guard(subject, user_id, ip)
        row = await self._live_code(code, subject, ip)
        user = await user_queries.by_id(self.db, user_id)
        assert user is not None
        uuid, name = row["minecraft_uuid"], row["minecraft_name"]
        if user["minecraft_uuid"] is not None and user["minecraft_uuid"] != uuid:
            raise Conflict(f"Your account is already linked to the Minecraft player {user['minecraft_username']}. "
                           "Unlink it in Settings → Minecraft first, then enter a new code.", code="already_linked")
        owner = await self._owner_of(uuid)
        if owner is not None and owner["id"] != user_id:
            raise Conflict(f"The Minecraft player {name} is linked to another Vonix account. Sign in to that "
                           "account and unlink it there, or ask a moderator.", code="minecraft_taken")
        try:
            async with self.db.transaction():
                if not await self._claim(row, user_id):
                    raise _wrong_code()
                await user_queries.update(self.db, user_id, minecraft_uuid=uuid, minecraft_username=name)
        except UniqueViolation:
            raise Conflict(f"The Minecraft player {name} is linked to another Vonix account.",
                           code="minecraft_taken") from None
        await self.resources.auth.lockout.record(None, subject, ip, success=True)
        await audit.record(self.db, "minecraft.linked", actor_id=user_id, target_type="user", target_id=user_id,
                           ip=ip, minecraft_uuid=uuid, minecraft_name=name, game_server_id=row["server_id"])
        await self._changed(user_id)
        return await self.status(user_id)

    async def unlink(self, user_id: int, ip: str | None) -> dict[str, Any]:
        user = await user_queries.by_id(self.db, user_id)
        if user is not None and user["minecraft_uuid"] is not None:
            await user_queries.update(self.db, user_id, minecraft_uuid=None, minecraft_username=None)
            await audit.record(self.db, "minecraft.unlinked", actor_id=user_id, target_type="user",
                               target_id=user_id, ip=ip, minecraft_uuid=user["minecraft_uuid"])
            await self._changed(user_id)
        return await self.status(user_id)

    async def status(self, user_id: int) -> dict[str, Any]:
        user = await user_queries.by_id(self.db, user_id)
        if user is None or user["minecraft_uuid"] is None:
            return {"linked": False, "minecraft": None}
        return {"linked": True, "minecraft": {"name": user["minecraft_username"], "uuid": user["minecraft_uuid"],
                                              "head": self.head(user["minecraft_uuid"], user["minecraft_username"])}}

    def head(self, uuid: str, name: str | None) -> str | None:
        from urllib.parse import quote

        template = self.settings.minecraft_avatar_url
        if not template:
            return None
        return str(template.format(uuid=quote(uuid, safe=""), name=quote(name or "", safe=""), size=HEAD_SIZE))

    async def _changed(self, user_id: int) -> None:
        await self.resources.auth.user_changed(user_id)
        people = self.resources.people
        if people is not None:
            try:
                await people.check_profile_complete(user_id)  # a Minecraft head counts as a picture
            except Exception:
                log.exception("mc_link_profile_check_failed", user_id=user_id)

    # --- signing up with a code -------------------------------------------------------------------
    async def peek(self, code: str, ip: str | None) -> dict[str, Any]:
        """What a code would sign up as (the sign-up form's pre-filled username); counts as a try."""
        subject = f"mclink-ip:{ip}"
        await self._guard(subject, None, ip)
        row = await self._live_code(code, subject, ip)
        owner = await self._owner_of(row["minecraft_uuid"])
        taken = await user_queries.by_username(self.db, row["minecraft_name"])
        return {"name": row["minecraft_name"], "uuid": row["minecraft_uuid"], "expires_at": _iso(row["expires_at"]),
                "username": None if taken is not None else row["minecraft_name"], "linked": owner is not None}

    async def signup(self, code: str, username: str | None, email: str, password: str,
                     client: ClientInfo) -> Any:
        """A new account linked to the code's player, in one transaction with spending the code."""
        subject = f"mclink-ip:{client.ip}"
        await self._guard(subject, None, client.ip)
        row = await self._live_code(code, subject, client.ip)
        username = username or row["minecraft_name"]
        auth = self.resources.auth
        if await self._owner_of(row["minecraft_uuid"]) is not None:
            raise Conflict(f"The Minecraft player {row['minecraft_name']} is linked to an account already: "
                           "sign in to it instead.", code="minecraft_taken")
        try:
            auth.passwords.check_policy(password, username=username, email=email)
        except PasswordRejected as exc:
            raise ValidationFailed(details=[{"field": "password", "code": exc.code, "message": str(exc)}]) from None
        password_hash = await auth.passwords.hash(password)
        try:
            async with self.db.transaction():
                user_id = await user_queries.insert(
                    self.db, username=username, email=None, pending_email=email.strip().lower(),
                    password_hash=password_hash,
                    display_name=username, minecraft_uuid=row["minecraft_uuid"],
                    minecraft_username=row["minecraft_name"])
                if not await self._claim(row, user_id):
                    raise _wrong_code()
        except UniqueViolation as exc:
            constraint = exc.constraint or ""
            if "minecraft" in constraint:
                raise Conflict("That Minecraft player is linked to an account already.", code="minecraft_taken") \
                    from None
            # No email branch: the address is only pending (as for /api/auth/register), so signing up
            # never reveals whether it belongs to an account.
            raise Conflict("That username is taken.", code="username_taken") from None
        await auth.lockout.record(None, subject, client.ip, success=True)
        await audit.record(self.db, "user.registered", actor_id=user_id, target_type="user", target_id=user_id,
                           ip=client.ip, via="minecraft_code")
        await audit.record(self.db, "minecraft.linked", actor_id=user_id, target_type="user", target_id=user_id,
                           ip=client.ip, minecraft_uuid=row["minecraft_uuid"], minecraft_name=row["minecraft_name"],
                           game_server_id=row["server_id"])
        user = await user_queries.by_id(self.db, user_id)
        # After the answer, either way: a verification link, or a notice to the address's owner.
        self.resources.spawn(mail_after_signup(self.db, auth.mailer, self.settings.public_url, user), "signup-mail")
        return user

    # --- the game chat bridge ---------------------------------------------------------------------
    async def server_of_bot(self, user_id: int) -> int | None:
        if user_id not in self._servers_of_bots:
            self._servers_of_bots[user_id] = await keys.server_of_bot(self.db, user_id)
        return self._servers_of_bots[user_id]

    def message_stored(self, event: Any) -> None:
        """After commit (from the persistence hook): must return at once and never raise."""
        data = event.data
        if event.author_kind != "bot" or event.author_id is None or not isinstance(data, dict) \
                or data.get("system") not in BRIDGE_EVENTS:
            return
        via = data.get("via")
        player = via.get("name") if isinstance(via, dict) else None
        self._queue(-int(event.author_id), str(data["system"]), player if isinstance(player, str) else None)

    def bridge_gone(self, user: Any) -> None:
        """A bot's last connection on this replica closed: a game server's list is no longer exact."""
        if getattr(user, "kind", None) == "bot" and getattr(user, "game_server_id", None):
            self._queue(int(user.game_server_id), "bridge_offline", None)

    def _queue(self, target: int, event: str, player: str | None) -> None:
        """`target`: a game server id, or minus the bot's user id (looked up in order)."""
        self._events.append((target, event, player))
        if not self._draining:
            self._draining = True
            self.resources.spawn(self._drain(), "mc_game_events")

    async def _drain(self) -> None:
        """One at a time, in the order stored: a quick join then leave never arrives reversed."""
        try:
            while self._events:
                target, event, player = self._events.popleft()
                try:
                    server_id = target if target > 0 else await self.server_of_bot(-target)
                    if server_id is not None:
                        await self.game_event(server_id, event, player=player)
                except Exception:
                    log.exception("mc_game_event_failed", game_event=event)
        finally:
            self._draining = False

    async def close_server(self, server_id: int) -> None:
        """Before a game server is deleted: its keys are revoked and their websockets close on every
        replica (the rows then go with the server, by cascade)."""
        key_ids = await self.db.fetch_all("mc_keys.revoke_server", mc_api_keys.update().where(
            mc_api_keys.c.server_id == server_id, mc_api_keys.c.revoked_at.is_(None)).values(
            revoked_at=utcnow()).returning(mc_api_keys.c.id))
        if key_ids:
            await self.resources.auth.publish_revocation([keys.key_session(r["id"]) for r in key_ids], None)

    async def game_event(self, server_id: int, event: str, player: str | None = None,
                         players: list[str] | None = None) -> None:
        status = self.resources.mc_status
        if status is not None and hasattr(status, "game_event"):
            await status.game_event(server_id, event, player=player, players=players)


def attach(resources: Any, settings: Any) -> None:
    """Wire this area into the app's resources (called at the end of Resources.build): the link
    service, and two observers of the realtime hooks (kept beside whatever was there)."""
    service = LinkService(resources, settings)
    resources.mc_link = service
    hooks = resources.hooks
    if hooks is None:
        return
    hooks.stored_observers.append(service.message_stored)
    hooks.offline_observers.append(service.bridge_gone)
