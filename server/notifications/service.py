"""Who is notified of a committed message, and how: stored row, live push, web push.

- a DM notifies the other member (`dm`);
- a room message with `data.reply_to` (an offset in the same room) notifies that message's author
  (`reply`);
- `@username` in a room message's `data.text` notifies that user (`mention`), if they may read the
  room (anyone for a public room, members for a private one).
One message gives a user at most one notification (dm > reply > mention); nobody is notified of
their own message, and bots are never notified.

The hook calls `message_stored` after the commit, inside the node's per-channel publish lock, so
the fan-out runs as a spawned task: the message publish never waits for it.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

import sqlalchemy as sa

from server.db.database import Database
from server.db.tables import channel_members, users
from server.notifications import store
from server.notifications.events import MessageStored
from server.notifications.online import has_live_connection
from server.observability.logging import get_logger
from server.push.sender import PushMessage, PushSender
from server.services.channels import dm_members

log = get_logger("vonix.notifications")
MENTION = re.compile(r"(?<![A-Za-z0-9_@])@([A-Za-z0-9_]{3,32})(?![A-Za-z0-9_])")
MAX_MENTIONS = 20
BODY_CHARS = 200
URGENCY = {"dm": "high", "mention": "high", "reply": "normal"}


def mentioned_names(text: str) -> list[str]:
    seen: dict[str, None] = {}
    for match in MENTION.finditer(text):
        seen.setdefault(match.group(1).lower(), None)
        if len(seen) >= MAX_MENTIONS:
            break
    return list(seen)


class Notifications:
    def __init__(self, db: Database, node: Any, push: PushSender | None, push_when: str,
                 spawn: Callable[[Any, str], None]) -> None:
        self.db = db
        self.node = node
        self.push = push
        self.push_when = push_when
        self.spawn = spawn
        self.relations: Any = None  # set by Resources.build: members who blocked the author are not notified

    def message_stored(self, event: MessageStored) -> None:
        """Called by the persistence hook after commit; must return at once and never raise."""
        if event.channel.startswith("dm:") or event.reply_to is not None or "@" in event.text:
            self.spawn(self.fan_out(event), "notifications")

    async def fan_out(self, event: MessageStored) -> None:
        try:
            targets = await self.recipients(event)
        except Exception:
            log.exception("notification_recipients_failed", channel=event.channel, offset=event.offset)
            return
        for user_id, kind in targets.items():
            try:
                await self.notify(user_id, kind, event)
            except Exception:
                log.exception("notification_failed", user_id=user_id, channel=event.channel)

    async def recipients(self, event: MessageStored) -> dict[int, str]:
        targets: dict[int, str] = {}
        if event.channel.startswith("dm:"):
            members = dm_members(event.channel)
            if members is not None:
                for user_id in members:
                    if user_id != event.author_id:
                        targets[user_id] = "dm"
            return await self._humans(targets, event.author_id)
        if event.reply_to is not None:
            author = await store.author_at(self.db, event.channel_id, event.reply_to)
            if author is not None and author != event.author_id:
                targets[author] = "reply"
        names = mentioned_names(event.text)
        if names:
            query = sa.select(users.c.id).where(sa.func.lower(users.c.username).in_(names),
                                                users.c.status == "active")
            if event.channel_kind != "room":  # private rooms: only members may read
                query = query.where(users.c.id.in_(sa.select(channel_members.c.user_id).where(
                    channel_members.c.channel_id == event.channel_id)))
            for row in await self.db.fetch_all("notifications.mentioned", query):
                if row["id"] != event.author_id:
                    targets.setdefault(row["id"], "mention")
        return await self._humans(targets, event.author_id)

    async def _humans(self, targets: dict[int, str], author_id: int | None = None) -> dict[int, str]:
        if not targets:
            return targets
        if author_id is not None and self.relations is not None:
            for blocker in await self.relations.blockers_of(author_id, targets):
                del targets[blocker]
            if not targets:
                return targets
        rows = await self.db.fetch_all("notifications.humans", sa.select(users.c.id).where(
            users.c.id.in_(list(targets)), users.c.role != "bot", users.c.status == "active"))
        keep = {r["id"] for r in rows}
        return {user_id: kind for user_id, kind in targets.items() if user_id in keep}

    async def notify(self, user_id: int, kind: str, event: MessageStored) -> dict[str, Any]:
        actor = {"id": event.author_id, "username": event.author_name} if event.author_id else None
        who = event.author_name or "Vonix"
        if kind == "dm":
            title, url = f"{who} sent you a message", f"/dms/{who}"
        else:
            room = event.channel.partition(":")[2]
            verb = "replied to you" if kind == "reply" else "mentioned you"
            title, url = f"{who} {verb} in #{room}", f"/rooms/{room}#m{event.offset}"
        body = event.text[:BODY_CHARS] or "(no text)"
        item = await store.insert(self.db, user_id=user_id, kind=kind, channel=event.channel, offset=event.offset,
                                  actor_id=event.author_id,
                                  data={"title": title, "body": body, "url": url, "actor": actor})
        if await store.settle_if_read(self.db, item["id"], event.channel_id, user_id, event.offset):
            item["read"] = True  # read live while it was being written: stored, but no badge and no push
        unread = await store.unread(self.db, user_id)
        await self.publish(user_id, {"type": "notification", "notification": item, "unread": unread})
        if not item["read"] and await self.should_push(user_id):
            # Its own task: one user's slow or retried push never delays the next recipient.
            self.spawn(self.push.send_to_user(user_id, PushMessage(  # type: ignore[union-attr]
                title=title, body=body, url=url, tag=event.channel, kind=kind, notification_id=item["id"],
                urgency=URGENCY.get(kind, "normal"))), "web-push")
        return item

    async def notify_about(self, user_ids: list[int], kind: str, *, title: str, body: str, url: str,
                           actor: dict[str, Any] | None = None, tag: str | None = None,
                           urgency: str = "normal") -> None:
        """A notification that is not about a chat message (a forum reply, an event reminder, a
        level-up): stored, pushed live, and web-pushed to members not looking (`PUSH_WHEN`).
        Bots, suspended members and members who blocked the actor are skipped; one member's
        failure does not stop the others."""
        targets = await self._humans({uid: kind for uid in user_ids},
                                     actor["id"] if actor is not None else None)
        for user_id in targets:
            try:
                item = await store.insert(self.db, user_id=user_id, kind=kind, channel=None, offset=None,
                                          actor_id=actor["id"] if actor is not None else None,
                                          data={"title": title, "body": body[:BODY_CHARS], "url": url,
                                                "actor": actor})
                unread = await store.unread(self.db, user_id)
                await self.publish(user_id, {"type": "notification", "notification": item, "unread": unread})
                if await self.should_push(user_id):
                    self.spawn(self.push.send_to_user(user_id, PushMessage(  # type: ignore[union-attr]
                        title=title, body=body[:BODY_CHARS], url=url, tag=tag or kind, kind=kind,
                        notification_id=item["id"], urgency=urgency)), "web-push")
            except Exception:
                log.exception("notification_failed", user_id=user_id, kind=kind)

    async def should_push(self, user_id: int) -> bool:
        if self.push is None or not self.push.enabled or self.push_when == "never":
            return False
        if self.push_when == "always":
            return True
        return not await has_live_connection(self.node, user_id)

    async def publish(self, user_id: int, data: dict[str, Any]) -> None:
        """Live on the personal channel; an outage is logged (the row is stored either way)."""
        try:
            await self.node.publish(f"user:{user_id}", data)
        except Exception as exc:
            log.warning("notification_live_push_failed", user_id=user_id, error=exc.__class__.__name__)

    # --- the API's side ---------------------------------------------------------------------
    async def mark_read(self, user_id: int, ids: list[int] | None) -> tuple[list[int], int]:
        changed = await store.mark_read(self.db, user_id, ids)
        unread = await store.unread(self.db, user_id)
        if changed:
            await self.publish(user_id, {"type": "notifications_read", "ids": changed if ids is not None else "all",
                                         "unread": unread})
        return changed, unread
