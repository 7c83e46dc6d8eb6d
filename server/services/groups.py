"""The community's groups and events (docs/community.md, "Groups" and "Events").

Groups: a public group is read by every signed-in member and joined at once; a private one is read
by its members only (anyone else gets "not found", as for an id that does not exist) and joined
by request, approved by its owner or moderators. Each group has a chat room (created with it,
private for a private group) whose members follow the group's: joining, being approved and leaving
the group join and leave the room. The group is authoritative: the rooms API asks
`check_room_leave` / `check_room_invite` (409 `group_room`), so a member never leaves only the
room and nobody outside a private group is invited into its room. `can_read` / `can_post` are the
rule the feed asks about group posts.

Events: an event of a private group is seen by the group's members only; every other event by
everyone signed in. RSVPs take the event row's lock first (a no-op UPDATE: PostgreSQL's row lock,
SQLite's write lock) and change the counters in the same transaction, so concurrent answers never
exceed the capacity. Live events go out after the commit: an event's own stream
`live:event:<id>`, plus `live:events:all` (or `live:group:<id>` for a private group's event).
"""

from __future__ import annotations

import re
import secrets
import unicodedata
from collections.abc import Iterable, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

import sqlalchemy as sa

from realtime.connection import ConnUser
from server.db.database import Database
from server.db.errors import UniqueViolation
from server.db.tables import channels, users
from server.db.tables_groups import event_rsvps, events, group_members, groups
from server.db.types import UtcDateTime, utcnow
from server.errors import Conflict, Forbidden, NotFound, ValidationFailed
from server.observability.logging import get_logger
from server.services import cursors
from server.services.cursors import MAX_ID
from server.services.viewer import Page, Viewer

log = get_logger("vonix.groups")

MEMBER_ROLES = ("owner", "moderator", "member")
STAFF_ROLES = ("owner", "moderator")
EVENTS_ALL = "live:events:all"
EVENT_MAX_DAYS = 31  # an event lasts at most this long: "upcoming" scans a bounded index range
ROOM_TOPIC = "Chat of the group {name}"


# --- cursors (server/services/cursors.py) ---------------------------------------------------

def encode_event_cursor(starts_at: datetime, event_id: int) -> str:
    return cursors.encode([int(starts_at.timestamp() * 1_000_000), event_id])


def decode_event_cursor(cursor: str | None) -> tuple[datetime, int] | None:
    """(starts_at, id) of the last event shown; anything else is a 422 field error."""
    value = cursors.decode(cursor, 2)
    if value is None:
        return None
    micros = value[0]
    if not isinstance(micros, int) or isinstance(micros, bool):
        raise cursors.bad_cursor()
    try:
        starts = datetime.fromtimestamp(micros / 1_000_000, UTC)
    except (OverflowError, OSError, ValueError):
        raise cursors.bad_cursor() from None
    return starts, cursors.valid_id(value[1])


def slugify(name: str) -> str:
    """ASCII, lower case, words joined by dashes ("Redstone Builders!" → "redstone-builders")."""
    ascii_name = unicodedata.normalize("NFKD", name).encode("ascii", "ignore").decode()
    slug = re.sub(r"[^a-z0-9]+", "-", ascii_name.lower()).strip("-")
    return slug[:48].strip("-") or "group"


# --- list queries (built here so they can be EXPLAINed) ------------------------------------------

def _my_groups(user_id: int) -> sa.Select[Any]:
    """Ids of the groups the user is a member of (ix_group_members_user_id_group_id)."""
    return sa.select(group_members.c.group_id).where(
        group_members.c.user_id == user_id, group_members.c.role.in_(MEMBER_ROLES))


def _group_select() -> sa.Select[Any]:
    return sa.select(groups, channels.c.name.label("room_name")).select_from(
        groups.outerjoin(channels, channels.c.id == groups.c.room_channel_id))


def groups_query(user_id: int, cursor: int | None, limit: int) -> sa.Select[Any]:
    """Public groups and the viewer's private ones, newest first (the primary key backwards)."""
    query = _group_select().where(sa.or_(groups.c.visibility == "public", groups.c.id.in_(_my_groups(user_id))))
    if cursor is not None:
        query = query.where(groups.c.id < cursor)
    return query.order_by(groups.c.id.desc()).limit(limit + 1)


def events_query(user_id: int, when: str, now: datetime, group_id: int | None,
                 cursor: tuple[datetime, int] | None, limit: int) -> sa.Select[Any]:
    """Upcoming (not yet over, soonest first) or past (latest first) events the viewer may see, on
    ix_events_starts_at_id (or ix_events_group_id_starts_at_id for one group's)."""
    query = sa.select(events).where(sa.or_(events.c.private.is_(False), events.c.group_id.in_(_my_groups(user_id))))
    if group_id is not None:
        query = query.where(events.c.group_id == group_id)
    position = sa.tuple_(events.c.starts_at, events.c.id)
    if when == "upcoming":
        # an event lasts at most EVENT_MAX_DAYS: anything that started earlier is over
        query = query.where(events.c.ends_at > now,
                            events.c.starts_at > sa.bindparam("earliest", now - timedelta(days=EVENT_MAX_DAYS),
                                                              type_=UtcDateTime()))
        if cursor is not None:
            query = query.where(position > sa.tuple_(sa.bindparam("after_start", cursor[0], type_=UtcDateTime()),
                                                     sa.bindparam("after_id", cursor[1])))
        return query.order_by(events.c.starts_at, events.c.id).limit(limit + 1)
    query = query.where(events.c.ends_at <= now)
    if cursor is not None:
        query = query.where(position < sa.tuple_(sa.bindparam("before_start", cursor[0], type_=UtcDateTime()),
                                                 sa.bindparam("before_id", cursor[1])))
    return query.order_by(events.c.starts_at.desc(), events.c.id.desc()).limit(limit + 1)


def due_reminders_query(now: datetime, minutes: int, limit: int = 100) -> sa.Select[Any]:
    """Events starting within `minutes` whose reminder nobody claimed yet (ix_events_starts_at_id)."""
    return sa.select(events.c.id).where(
        events.c.starts_at > now, events.c.starts_at <= now + timedelta(minutes=minutes),
        events.c.reminder_sent_at.is_(None)).order_by(events.c.starts_at, events.c.id).limit(limit)


def room_group_query(channel_id: int) -> sa.Select[Any]:
    """The group whose chat room is this channel, if any (ix_groups_room_channel_id)."""
    return sa.select(groups.c.id, groups.c.visibility).where(groups.c.room_channel_id == channel_id)


class Groups:
    """Groups, their members and requests; `events` holds the events of the same area."""

    def __init__(self, resources: Any) -> None:
        self.resources = resources
        self.db: Database = resources.db
        self.events = Events(resources, self)
        self.reminders: Any = None  # server/services/event_reminders.py, set by `attach`

    # --- who may do what (also what the feed asks) -------------------------------------------------
    async def access(self, group_id: int, user_id: int) -> tuple[str | None, str | None]:
        """(visibility, the user's role): (None, None) for a group that does not exist."""
        if not 0 < group_id < MAX_ID:
            return None, None
        mine = group_members.alias("mine")
        row = await self.db.fetch_one("groups.access", sa.select(groups.c.visibility, mine.c.role).select_from(
            groups.outerjoin(mine, sa.and_(mine.c.group_id == groups.c.id, mine.c.user_id == user_id))).where(
            groups.c.id == group_id))
        return (row["visibility"], row["role"]) if row is not None else (None, None)

    async def can_read(self, group_id: int, user_id: int) -> bool:
        """A public group: anyone signed in; a private one: its owner, moderators and members."""
        visibility, role = await self.access(group_id, user_id)
        return visibility == "public" or (visibility == "private" and role in MEMBER_ROLES)

    async def can_post(self, group_id: int, user_id: int) -> bool:
        """Members only (owner, moderators, members), whatever the visibility."""
        _, role = await self.access(group_id, user_id)
        return role in MEMBER_ROLES

    async def may_read_stream(self, user: ConnUser, key: str) -> bool:
        """`live:group:<id>`: who may read the group."""
        return key.isdigit() and await self.can_read(int(key), user.user_id)

    async def readable(self, group_id: int, viewer: Viewer) -> tuple[Any, str | None]:
        """The group and the viewer's role in it; 404 when they may not read it."""
        row = None if not 0 < group_id < MAX_ID else await self.db.fetch_one(
            "groups.by_id", _group_select().where(groups.c.id == group_id))
        role = await self.role_of(group_id, viewer.user_id) if row is not None else None
        if row is None or (row["visibility"] == "private" and role not in MEMBER_ROLES):
            raise NotFound("No such group.", code="group_not_found")
        return row, role

    async def staff(self, group_id: int, viewer: Viewer) -> tuple[Any, str]:
        """The group, when the viewer is its owner or a moderator (a reader who is not: 403)."""
        row, role = await self.readable(group_id, viewer)
        if role not in STAFF_ROLES:
            raise Forbidden("Only the group's owner and moderators can do this.", code="not_group_moderator")
        assert role is not None
        return row, role

    async def role_of(self, group_id: int, user_id: int) -> str | None:
        return await self.db.fetch_val("groups.role", sa.select(group_members.c.role).where(  # type: ignore[no-any-return]
            group_members.c.group_id == group_id, group_members.c.user_id == user_id))

    async def _roles(self, group_ids: Sequence[int], user_id: int) -> dict[int, str]:
        if not group_ids:
            return {}
        rows = await self.db.fetch_all("groups.roles", sa.select(group_members.c.group_id, group_members.c.role).where(
            group_members.c.user_id == user_id, group_members.c.group_id.in_(group_ids)))
        return {int(r["group_id"]): r["role"] for r in rows}

    # --- shapes ------------------------------------------------------------------------------------
    @staticmethod
    def shape(row: Any, my_role: str | None) -> dict[str, Any]:
        return {"id": row["id"], "name": row["name"], "slug": row["slug"], "description": row["description"],
                "visibility": row["visibility"], "members": row["members"], "my_role": my_role,
                "room": row["room_name"], "created_at": row["created_at"].isoformat()}

    async def _group(self, group_id: int) -> Any:
        return await self.db.fetch_one("groups.by_id", _group_select().where(groups.c.id == group_id))

    async def _person(self, user_id: int) -> dict[str, Any] | None:
        return (await self.resources.people.authors([user_id])).get(user_id)

    # --- groups ------------------------------------------------------------------------------------
    async def list(self, viewer: Viewer, cursor: int | None, limit: int) -> Page:
        rows = await self.db.fetch_all("groups.list", groups_query(viewer.user_id, cursor, limit))
        shown = rows[:limit]
        roles = await self._roles([r["id"] for r in shown], viewer.user_id)
        return Page([self.shape(r, roles.get(r["id"])) for r in shown],
                    cursors.encode_id(shown[-1]["id"]) if len(rows) > limit else None)

    async def show(self, group_id: int, viewer: Viewer) -> dict[str, Any]:
        row, role = await self.readable(group_id, viewer)
        return self.shape(row, role)

    async def create(self, viewer: Viewer, name: str, description: str | None, visibility: str) -> dict[str, Any]:
        """The group, its owner's membership and its room, in one transaction (a name taken in
        any case is 409 `group_name_taken`)."""
        slug = slugify(name)
        now = utcnow()
        try:
            async with self.db.transaction():
                group_id = int(await self.db.fetch_val("groups.insert", groups.insert().values(
                    name=name, slug=slug, description=description, visibility=visibility, members=1,
                    created_at=now).returning(groups.c.id)))
                await self.db.execute("groups.add_member", group_members.insert().values(
                    group_id=group_id, user_id=viewer.user_id, role="owner", created_at=now))
                room = await self._channels.create_room(
                    await self._free_room_name(slug, group_id), owner_id=viewer.user_id,
                    private=visibility == "private", topic=ROOM_TOPIC.format(name=name), title=name)
                await self.db.execute("groups.set_room", groups.update().where(groups.c.id == group_id).values(
                    room_channel_id=room.id))
        except UniqueViolation:
            if await self._name_taken(name):
                raise Conflict("A group with this name exists.", code="group_name_taken") from None
            raise
        row = await self._group(group_id)
        return self.shape(row, "owner")

    @property
    def _channels(self) -> Any:
        return self.resources.hooks.channels

    async def _free_room_name(self, slug: str, group_id: int) -> str:
        """`<slug>-g<id>`, or with a random tail when someone made a room of that name."""
        name = f"{slug[:40].strip('-')}-g{group_id}"
        while await self._channels.by_name(f"room:{name}") is not None:
            name = f"{slug[:40].strip('-')}-g{group_id}-{secrets.token_hex(3)}"
        return name

    async def _name_taken(self, name: str, other_than: int | None = None) -> bool:
        # The same lower() as the unique index: SQLite's folds ASCII only, so a Python lower()
        # would miss the clash the index just reported (a 500 instead of 409).
        query = sa.select(groups.c.id).where(sa.func.lower(groups.c.name) == sa.func.lower(name))
        if other_than is not None:
            query = query.where(groups.c.id != other_than)
        return await self.db.fetch_val("groups.name_taken", query) is not None

    async def update(self, group_id: int, viewer: Viewer, changes: dict[str, Any]) -> dict[str, Any]:
        """Name and description (owner and moderators); `group_updated` on the group's stream."""
        _, role = await self.staff(group_id, viewer)
        if changes:
            try:
                await self.db.execute("groups.update", groups.update().where(groups.c.id == group_id).values(
                    **changes, **({"slug": slugify(changes["name"])} if "name" in changes else {})))
            except UniqueViolation:
                raise Conflict("A group with this name exists.", code="group_name_taken") from None
        row = await self._group(group_id)
        if changes:
            await self.resources.live.publish(f"live:group:{group_id}", {
                "type": "group_updated", "group": self.shape(row, None)})
        return self.shape(row, role)

    async def join(self, group_id: int, viewer: Viewer) -> dict[str, Any]:
        """A public group: a member at once (and in its room); a private one: a pending request,
        told to the owner and moderators. Joining again changes nothing."""
        visibility, role = await self.access(group_id, viewer.user_id)
        if visibility is None:
            raise NotFound("No such group.", code="group_not_found")
        if role is None:
            role = "member" if visibility == "public" else "pending"
            try:
                async with self.db.transaction():
                    await self.db.execute("groups.add_member", group_members.insert().values(
                        group_id=group_id, user_id=viewer.user_id, role=role, created_at=utcnow()))
                    members = await self._count(group_id, +1) if role == "member" else None
            except UniqueViolation:  # the same member, at the same moment, on another request
                role = await self.role_of(group_id, viewer.user_id)
            else:
                if members is not None:
                    await self._joined(group_id, viewer.user_id, members)
                else:
                    await self._requested(group_id, viewer)
        if visibility == "private" and role not in MEMBER_ROLES:
            return {"id": group_id, "my_role": role}  # what the group holds stays hidden until approved
        return self.shape(await self._group(group_id), role)

    async def _count(self, group_id: int, delta: int) -> int:
        """Change the member counter (inside the caller's transaction); the new count."""
        return int(await self.db.fetch_val("groups.count", groups.update().where(groups.c.id == group_id).values(
            members=groups.c.members + delta).returning(groups.c.members)))

    async def _room_id(self, group_id: int) -> int | None:
        value = await self.db.fetch_val("groups.room", sa.select(groups.c.room_channel_id).where(
            groups.c.id == group_id))
        return int(value) if value is not None else None

    async def _joined(self, group_id: int, user_id: int, members: int) -> None:
        room_id = await self._room_id(group_id)
        if room_id is not None:
            await self._channels.add_member(room_id, user_id)
        await self.resources.live.publish(f"live:group:{group_id}", {
            "type": "member_joined", "group_id": group_id, "user": await self._person(user_id), "members": members})

    async def _requested(self, group_id: int, viewer: Viewer) -> None:
        user = await self._person(viewer.user_id)
        await self.resources.live.publish(f"live:group:{group_id}", {
            "type": "join_request", "group_id": group_id, "user": user})
        staff = await self.db.fetch_all("groups.staff", sa.select(group_members.c.user_id).where(
            group_members.c.group_id == group_id, group_members.c.role.in_(STAFF_ROLES)))
        name = await self.db.fetch_val("groups.name", sa.select(groups.c.name).where(groups.c.id == group_id))
        await self.resources.notifications.notify_about(
            [int(r["user_id"]) for r in staff], "group_request", title=f"{viewer.username} asks to join {name}",
            body="Approve or decline the request on the group's page.", url=f"/groups/{group_id}",
            actor={"id": viewer.user_id, "username": viewer.username}, tag=f"group:{group_id}")

    async def leave(self, group_id: int, viewer: Viewer) -> None:
        """Leave the group (and its room), or withdraw a pending request. The owner stays."""
        visibility, role = await self.access(group_id, viewer.user_id)
        if visibility is None or (visibility == "private" and role is None):
            raise NotFound("No such group.", code="group_not_found")
        if role is None:
            raise Conflict("You are not in this group.", code="not_a_member")
        if role == "owner":
            raise Conflict("The owner cannot leave the group.", code="owner_cannot_leave")
        async with self.db.transaction():
            gone = await self.db.fetch_val("groups.remove_member", group_members.delete().where(
                group_members.c.group_id == group_id, group_members.c.user_id == viewer.user_id,
                group_members.c.role != "owner").returning(group_members.c.role))
            members = await self._count(group_id, -1) if gone in MEMBER_ROLES else None
        if members is None:
            return
        room_id = await self._room_id(group_id)
        if room_id is not None:
            await self._channels.remove_member(room_id, viewer.user_id)
        await self.resources.live.publish(f"live:group:{group_id}", {
            "type": "member_left", "group_id": group_id, "user": await self._person(viewer.user_id),
            "members": members})

    # --- the group is authoritative over its room (server/routes/rooms.py asks) -------------------
    async def check_room_leave(self, channel_id: int, user_id: int) -> None:
        """A member of the group cannot leave only its room (they would stay in the group without
        its chat): 409 `group_room`, they leave the group instead. Anyone else in the room (a
        passer-by of a public group's room) leaves it like any room."""
        group = await self.db.fetch_one("groups.by_room", room_group_query(channel_id))
        if group is not None and await self.role_of(int(group["id"]), user_id) in MEMBER_ROLES:
            raise Conflict("This is the room of a group you are in: leave the group instead.",
                           code="group_room", details={"group_id": group["id"]})

    async def check_room_invite(self, channel_id: int, user_id: int) -> None:
        """A private group's room is for the group's members: inviting anyone else is 409
        `group_room` (they ask to join the group, and its owner or moderators approve). A public
        group's room is open like any public room."""
        group = await self.db.fetch_one("groups.by_room", room_group_query(channel_id))
        if group is None or group["visibility"] != "private":
            return
        if await self.role_of(int(group["id"]), user_id) not in MEMBER_ROLES:
            raise Conflict("This is a private group's room: they must ask to join the group.",
                           code="group_room", details={"group_id": group["id"]})

    async def members(self, group_id: int, viewer: Viewer, cursor: int | None, limit: int) -> Page:
        """Members (owner, moderators, members) by user id; pending requests are not members."""
        await self.readable(group_id, viewer)
        return await self._people_page("groups.members", group_id, group_members.c.role.in_(MEMBER_ROLES),
                                       cursor, limit, "joined_at")

    async def requests(self, group_id: int, viewer: Viewer, cursor: int | None, limit: int) -> Page:
        await self.staff(group_id, viewer)
        return await self._people_page("groups.requests", group_id, group_members.c.role == "pending",
                                       cursor, limit, "requested_at")

    async def _people_page(self, name: str, group_id: int, which: Any, cursor: int | None, limit: int,
                           time_field: str) -> Page:
        query = sa.select(group_members).where(group_members.c.group_id == group_id, which)
        if cursor is not None:
            query = query.where(group_members.c.user_id > cursor)
        rows = await self.db.fetch_all(name, query.order_by(group_members.c.user_id).limit(limit + 1))
        shown = rows[:limit]
        people = await self.resources.people.authors(r["user_id"] for r in shown)
        items = [{"user": people.get(r["user_id"]), **({"role": r["role"]} if time_field == "joined_at" else {}),
                  time_field: r["created_at"].isoformat()} for r in shown]
        return Page(items, cursors.encode_id(shown[-1]["user_id"]) if len(rows) > limit else None)

    async def approve(self, group_id: int, viewer: Viewer, user_id: int) -> dict[str, Any]:
        """A pending request becomes a member (and joins the room); they are notified."""
        row, _ = await self.staff(group_id, viewer)
        async with self.db.transaction():
            approved = await self.db.fetch_val("groups.approve", group_members.update().where(
                group_members.c.group_id == group_id, group_members.c.user_id == user_id,
                group_members.c.role == "pending").values(role="member", created_at=utcnow())
                .returning(group_members.c.user_id))
            if approved is None:
                raise NotFound("No such request.", code="request_not_found")
            members = await self._count(group_id, +1)
        await self._joined(group_id, user_id, members)
        await self.resources.notifications.notify_about(
            [user_id], "group_approved", title=f"Welcome to {row['name']}",
            body=f"{viewer.username} approved your request to join.", url=f"/groups/{group_id}",
            actor={"id": viewer.user_id, "username": viewer.username}, tag=f"group:{group_id}")
        return {"user": await self._person(user_id), "role": "member"}

    async def decline(self, group_id: int, viewer: Viewer, user_id: int) -> None:
        await self.staff(group_id, viewer)
        declined = await self.db.fetch_val("groups.decline", group_members.delete().where(
            group_members.c.group_id == group_id, group_members.c.user_id == user_id,
            group_members.c.role == "pending").returning(group_members.c.user_id))
        if declined is None:
            raise NotFound("No such request.", code="request_not_found")

    async def set_role(self, group_id: int, viewer: Viewer, user_id: int, role: str) -> dict[str, Any]:
        """The owner makes a member a moderator or back (the room's role follows)."""
        _, mine = await self.readable(group_id, viewer)
        if mine != "owner":
            raise Forbidden("Only the group's owner changes roles.", code="not_group_owner")
        changed = await self.db.fetch_val("groups.set_role", group_members.update().where(
            group_members.c.group_id == group_id, group_members.c.user_id == user_id,
            group_members.c.role.in_(("moderator", "member"))).values(role=role).returning(group_members.c.user_id))
        if changed is None:
            raise NotFound("No such member.", code="member_not_found")
        room_id = await self._room_id(group_id)
        if room_id is not None:
            await self._channels.set_role(room_id, user_id, role)
        return {"user": await self._person(user_id), "role": role}

    async def user_id_of(self, username: str) -> int:
        """An active member by name; 404 `user_not_found` otherwise."""
        row = await self.db.fetch_one("groups.user_by_name", sa.select(users.c.id, users.c.status).where(
            sa.func.lower(users.c.username) == username.lower()))
        if row is None or row["status"] != "active":
            raise NotFound("No such member.", code="user_not_found")
        return int(row["id"])


class Events:
    """Events, RSVPs and their live streams (reminders: server/services/event_reminders.py)."""

    def __init__(self, resources: Any, groups_: Groups) -> None:
        self.resources = resources
        self.db: Database = resources.db
        self.groups = groups_

    # --- who sees what -----------------------------------------------------------------------------
    async def may_see(self, row: Any, user_id: int) -> bool:
        return row is not None and (not row["private"] or await self.groups.can_read(int(row["group_id"]), user_id))

    async def visible(self, event_id: int, viewer: Viewer) -> Any:
        row = None if not 0 < event_id < MAX_ID else await self.db.fetch_one(
            "events.by_id", sa.select(events).where(events.c.id == event_id))
        if not await self.may_see(row, viewer.user_id):
            raise NotFound("No such event.", code="event_not_found")
        return row

    async def may_read_stream(self, user: ConnUser, key: str) -> bool:
        """`live:event:<id>`: who may see the event."""
        if not key.isdigit() or not 0 < int(key) < MAX_ID:
            return False
        row = await self.db.fetch_one("events.by_id", sa.select(events).where(events.c.id == int(key)))
        return await self.may_see(row, user.user_id)

    async def _may_manage(self, row: Any, viewer: Viewer) -> None:
        """Its author, the group's owner and moderators, and site moderators (others: 403)."""
        if row["author_id"] == viewer.user_id or viewer.moderator:
            return
        group_id = row["group_id"]
        if group_id is not None and await self.groups.role_of(int(group_id), viewer.user_id) in STAFF_ROLES:
            return
        raise Forbidden("Only the event's organisers can change it.", code="not_event_organiser")

    @staticmethod
    def stream_of(row: Any) -> str:
        """Where the event's list hears of it: everyone, or only the private group's members."""
        return f"live:group:{row['group_id']}" if row["private"] else EVENTS_ALL

    # --- shapes ------------------------------------------------------------------------------------
    async def shape(self, rows: Sequence[Any], viewer_id: int | None) -> list[dict[str, Any]]:
        """Events as the API shows them; `viewer_id` None: as a stranger (broadcasts)."""
        authors = await self.resources.people.authors(r["author_id"] for r in rows if r["author_id"] is not None)
        mine = await self._statuses([r["id"] for r in rows], viewer_id) if viewer_id is not None else {}
        return [{
            "id": r["id"], "title": r["title"], "description": r["description"],
            "starts_at": r["starts_at"].isoformat(), "ends_at": r["ends_at"].isoformat(), "timezone": r["timezone"],
            "place": _place(r), "capacity": r["capacity"], "group_id": r["group_id"],
            "author": authors.get(r["author_id"]) if r["author_id"] is not None else None,
            "counts": _counts(r), "my_status": mine.get(r["id"]),
            "full": r["capacity"] is not None and r["going"] >= r["capacity"],
            "created_at": r["created_at"].isoformat(),
        } for r in rows]

    async def _statuses(self, event_ids: Iterable[int], user_id: int) -> dict[int, str]:
        ids = list(event_ids)
        if not ids:
            return {}
        rows = await self.db.fetch_all("events.my_status", sa.select(
            event_rsvps.c.event_id, event_rsvps.c.status).where(
            event_rsvps.c.event_id.in_(ids), event_rsvps.c.user_id == user_id))
        return {int(r["event_id"]): r["status"] for r in rows}

    async def one(self, row: Any, viewer_id: int | None) -> dict[str, Any]:
        return (await self.shape([row], viewer_id))[0]

    # --- lists -------------------------------------------------------------------------------------
    async def list(self, viewer: Viewer, when: str, group_id: int | None, cursor: tuple[datetime, int] | None,
                   limit: int) -> Page:
        if group_id is not None and not await self.groups.can_read(group_id, viewer.user_id):
            raise NotFound("No such group.", code="group_not_found")
        rows = await self.db.fetch_all("events.list_group" if group_id is not None else "events.list",
                                       events_query(viewer.user_id, when, utcnow(), group_id, cursor, limit))
        shown = rows[:limit]
        after = encode_event_cursor(shown[-1]["starts_at"], shown[-1]["id"]) if len(rows) > limit else None
        return Page(await self.shape(shown, viewer.user_id), after)

    # --- writes ------------------------------------------------------------------------------------
    async def create(self, viewer: Viewer, fields: dict[str, Any]) -> dict[str, Any]:
        """A group's event needs the group's `can_post` (an unreadable group: 404; a reader who is
        not a member: 403 `group_event_forbidden`)."""
        group_id = fields.get("group_id")
        private = False
        if group_id is not None:
            visibility, role = await self.groups.access(group_id, viewer.user_id)
            if visibility is None or (visibility == "private" and role not in MEMBER_ROLES):
                raise NotFound("No such group.", code="group_not_found")
            if role not in MEMBER_ROLES:
                raise Forbidden("Only the group's members plan its events.", code="group_event_forbidden")
            private = visibility == "private"
        event_id = await self.db.fetch_val("events.insert", events.insert().values(
            **fields, private=private, author_id=viewer.user_id, created_at=utcnow()).returning(events.c.id))
        row = await self._row(int(event_id))
        await self.resources.live.publish(self.stream_of(row), {
            "type": "event_created", "event": await self.one(row, None)})
        return await self.one(row, viewer.user_id)

    async def _row(self, event_id: int) -> Any:
        return await self.db.fetch_one("events.by_id", sa.select(events).where(events.c.id == event_id))

    async def update(self, event_id: int, viewer: Viewer, changes: dict[str, Any]) -> dict[str, Any]:
        """Edit (organisers); the times are checked together. A new start re-arms the reminder."""
        row = await self.visible(event_id, viewer)
        await self._may_manage(row, viewer)
        check_times(changes.get("starts_at", row["starts_at"]), changes.get("ends_at", row["ends_at"]))
        if "starts_at" in changes and changes["starts_at"] != row["starts_at"]:
            changes["reminder_sent_at"] = None
        if changes:
            await self.db.execute("events.update", events.update().where(events.c.id == event_id).values(**changes))
            row = await self._row(event_id)
            await self._updated(row)
        return await self.one(row, viewer.user_id)

    async def _updated(self, row: Any) -> None:
        data = {"type": "event_updated", "event": await self.one(row, None)}
        await self.resources.live.publish(f"live:event:{row['id']}", data)
        await self.resources.live.publish(self.stream_of(row), data)

    async def delete(self, event_id: int, viewer: Viewer) -> None:
        row = await self.visible(event_id, viewer)
        await self._may_manage(row, viewer)
        await self.db.execute("events.delete", events.delete().where(events.c.id == event_id))
        data = {"type": "event_deleted", "id": event_id}
        await self.resources.live.publish(f"live:event:{event_id}", data)
        await self.resources.live.publish(self.stream_of(row), data)

    async def rsvp(self, event_id: int, viewer: Viewer, status: str) -> dict[str, Any]:
        """Answer (or change the answer); `going` past the capacity is 409 `event_full`.

        The first statement is a no-op UPDATE of the event: it takes the row's lock (PostgreSQL)
        or the write lock (SQLite) before anything is read, so concurrent answers queue and each
        sees the counts the previous one committed."""
        row = await self.visible(event_id, viewer)
        if row["ends_at"] <= utcnow():
            raise Conflict("This event is over.", code="event_over")
        now = utcnow()
        async with self.db.transaction():
            locked = await self.db.fetch_one("events.lock", events.update().where(events.c.id == event_id).values(
                going=events.c.going).returning(events.c.capacity, events.c.going, events.c.interested,
                                                 events.c.not_going))
            if locked is None:
                raise NotFound("No such event.", code="event_not_found")
            old = await self.db.fetch_val("events.rsvp_of", sa.select(event_rsvps.c.status).where(
                event_rsvps.c.event_id == event_id, event_rsvps.c.user_id == viewer.user_id))
            counts = _counts(locked)
            if old != status:
                if status == "going" and locked["capacity"] is not None and locked["going"] >= locked["capacity"]:
                    raise Conflict("This event is full.", code="event_full")
                counts = await self._answer(event_id, viewer.user_id, old, status, now)
        if old != status:
            await self._announce_rsvp(event_id, viewer.user_id, status, counts)
        return {"counts": counts, "my_status": status}

    async def _answer(self, event_id: int, user_id: int, old: str | None, status: str, now: datetime) -> dict[str, int]:
        """Store the answer and move the counters (inside the caller's transaction)."""
        if old is None:
            await self.db.execute("events.rsvp_insert", event_rsvps.insert().values(
                event_id=event_id, user_id=user_id, status=status, created_at=now, updated_at=now))
        else:
            await self.db.execute("events.rsvp_update", event_rsvps.update().where(
                event_rsvps.c.event_id == event_id, event_rsvps.c.user_id == user_id).values(
                status=status, updated_at=now))
        moves: dict[str, Any] = {status: events.c[status] + 1}
        if old is not None:
            moves[old] = events.c[old] - 1
        updated = await self.db.fetch_one("events.counts", events.update().where(events.c.id == event_id).values(
            **moves).returning(events.c.going, events.c.interested, events.c.not_going))
        return _counts(updated)

    async def _announce_rsvp(self, event_id: int, user_id: int, status: str, counts: dict[str, int]) -> None:
        user = (await self.resources.people.authors([user_id])).get(user_id)
        await self.resources.live.publish(f"live:event:{event_id}", {
            "type": "rsvp", "event_id": event_id, "counts": counts, "user": user, "status": status})
        row = await self._row(event_id)
        if row is not None:
            await self.resources.live.publish(self.stream_of(row), {
                "type": "event_updated", "event": await self.one(row, None)})


def _counts(row: Any) -> dict[str, int]:
    return {"going": int(row["going"]), "interested": int(row["interested"]), "not_going": int(row["not_going"])}


def _place(row: Any) -> dict[str, Any] | None:
    if row["place_kind"] == "server":
        return {"kind": "server", "server": row["place_server"]}
    if row["place_kind"] == "text":
        return {"kind": "text", "text": row["place_text"]}
    return None


def check_times(starts_at: datetime, ends_at: datetime) -> None:
    """`ends_at` after `starts_at`, at most EVENT_MAX_DAYS later (a field error on `ends_at`)."""
    if ends_at <= starts_at:
        raise ValidationFailed(details=[{"field": "ends_at", "code": "ends_before_start",
                                         "message": "must be after starts_at"}])
    if ends_at - starts_at > timedelta(days=EVENT_MAX_DAYS):
        raise ValidationFailed(details=[{"field": "ends_at", "code": "too_long",
                                         "message": f"an event lasts at most {EVENT_MAX_DAYS} days"}])


async def _everyone(user: ConnUser, key: str) -> bool:
    """`live:events:all`: every signed-in member."""
    return key == "all"


def attach(resources: Any, settings: Any) -> None:
    """Wire this area into the app's resources (called at the end of Resources.build)."""
    from server.services.event_reminders import EventReminders

    resources.groups = Groups(resources)
    resources.groups.reminders = EventReminders(resources, settings.event_reminder_minutes)
    resources.live.register("group", resources.groups.may_read_stream)
    resources.live.register("events", _everyone)
    resources.live.register("event", resources.groups.events.may_read_stream)
