"""Event reminders: members who answered "going" or "interested" get an `event_reminder`
notification (stored, live on `user:<id>`, web-pushed) EVENT_REMINDER_MINUTES before the start.

Every replica runs the loop; the database decides who sends. A due event is *claimed* with a
conditional UPDATE (`SET reminder_sent_at = now WHERE id = ? AND reminder_sent_at IS NULL`): the
one statement that changes the row wins, every other replica (and every later tick, after a
restart too) sees the claim and skips it. The claim commits before the notifications go out, so a
replica that dies in between loses that reminder rather than sending it twice: "once" means at
most once. Moving an event's start re-arms its reminder (server/services/groups.py).
"""

from __future__ import annotations

import asyncio
from typing import Any
from zoneinfo import ZoneInfo

import sqlalchemy as sa

from server.db.tables_groups import event_rsvps, events, group_members
from server.db.types import utcnow
from server.observability.logging import get_logger
from server.services.groups import MEMBER_ROLES, due_reminders_query

log = get_logger("vonix.event_reminders")

DEFAULT_INTERVAL = 30.0  # seconds between two looks for due events


class EventReminders:
    def __init__(self, resources: Any, minutes: int, interval: float = DEFAULT_INTERVAL) -> None:
        self.resources = resources
        self.minutes = minutes
        self.interval = interval

    async def run(self) -> None:
        """Look for due events every `interval` seconds, forever (a background task of the
        lifespan: `resources.start_background(resources.groups.reminders.run(), "event-reminders")`)."""
        while True:
            try:
                await self.tick()
            except Exception as exc:  # the database is down, say: keep the loop, look again later
                log.warning("event_reminders_failed", error=f"{exc.__class__.__name__}: {exc}")
            await asyncio.sleep(self.interval)

    async def tick(self) -> int:
        """Claim and send every due reminder once; the number this replica sent."""
        db = self.resources.db
        now = utcnow()
        sent = 0
        for due in await db.fetch_all("events.due_reminders", due_reminders_query(now, self.minutes)):
            claimed = await db.fetch_one("events.claim_reminder", events.update().where(
                events.c.id == due["id"], events.c.reminder_sent_at.is_(None)).values(
                reminder_sent_at=now).returning(*events.c))
            if claimed is not None:  # this replica won the event
                await self._send(claimed)
                sent += 1
        return sent

    async def _send(self, event: Any) -> None:
        recipients = await self._recipients(event)
        if not recipients:
            return
        when = event["starts_at"].astimezone(ZoneInfo(event["timezone"]))
        await self.resources.notifications.notify_about(
            recipients, "event_reminder", title=f"Starting soon: {event['title']}",
            body=f"Starts at {when:%H:%M} ({event['timezone']}), {when:%A %d %B}.",
            url=f"/events/{event['id']}", tag=f"event:{event['id']}", urgency="high")
        log.info("event_reminder_sent", event_id=event["id"], recipients=len(recipients))

    async def _recipients(self, event: Any) -> list[int]:
        """Who answered going or interested (a private group's event: who is still a member)."""
        query = sa.select(event_rsvps.c.user_id).where(
            event_rsvps.c.event_id == event["id"], event_rsvps.c.status.in_(("going", "interested")))
        if event["private"]:
            query = query.where(event_rsvps.c.user_id.in_(sa.select(group_members.c.user_id).where(
                group_members.c.group_id == event["group_id"], group_members.c.role.in_(MEMBER_ROLES))))
        return [int(r["user_id"]) for r in await self.resources.db.fetch_all("events.reminded", query)]
