"""Response models shared by several routes: what members and bylines look like on the wire.

These describe the dicts the handlers and their query helpers already build (they are not used to
build them): `api(..., ok={200: Model})` puts them in the OpenAPI document, and schemathesis'
`response_schema_conformance` (tests/integration/test_schemathesis.py) checks real answers against
them, so a helper that changes a shape without its model fails a test. `Closed` models are shapes
we are sure of (`additionalProperties: false`); `Open` ones may carry more fields than listed.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict

Role = Literal["admin", "moderator", "member", "bot"]
AccountStatus = Literal["active", "suspended", "deleted"]
When = "2026-01-02T15:04:05.123456+00:00"  # what orjson writes for a UTC datetime


class Closed(BaseModel):
    """Every field listed: an unlisted field in an answer is a contract change."""

    model_config = ConfigDict(extra="forbid")


class Open(BaseModel):
    """The listed fields are always there; more may be added without notice."""


class Rank(Closed):
    name: str
    colour: str
    badge: str | None


# `avatar_urls`: a size name -> URL map, or null (show initials).
Avatar = dict[str, str] | None
AVATAR_EXAMPLE = {"small": "/media/avatars/ab12.webp", "large": "/media/avatars/ab12.webp"}


class Person(Closed):
    """A member as lists show them (`People.person`): friends, requests, search hits."""

    username: str
    display_name: str | None
    avatar: Avatar
    role: Role

    model_config = ConfigDict(extra="forbid", json_schema_extra={"examples": [
        {"username": "alex", "display_name": "Alex", "avatar": None, "role": "member"}]})


class Author(Closed):
    """A byline (`People.authors`): `Person` plus level and rank. Forum, feed, groups, events."""

    username: str
    display_name: str | None
    avatar: Avatar
    role: Role
    level: int
    rank: Rank | None


class PublicUser(Closed):
    """`users.public`: the account fields anyone may see."""

    id: int
    username: str
    display_name: str | None
    avatar_url: str | None
    bio: str | None
    role: Role
    status: AccountStatus
    minecraft_username: str | None
    minecraft_uuid: str | None
    xp: int
    level: int
    last_seen_at: datetime | None
    created_at: datetime


class PrivateUser(PublicUser):
    """`users.private`: the member's own account (a pending address shows as `email`, unverified)."""

    email: str | None
    email_verified: bool
    mfa_enabled: bool

    model_config = ConfigDict(extra="forbid", json_schema_extra={"examples": [{
        "id": 42, "username": "alex", "display_name": None, "avatar_url": None, "bio": None, "role": "member",
        "status": "active", "minecraft_username": None, "minecraft_uuid": None, "xp": 0, "level": 1,
        "last_seen_at": None, "created_at": When, "email": "alex@example.com", "email_verified": False,
        "mfa_enabled": False}]})


class Sender(Open):
    """The `from` of a message: id and username (a deleted author shows as "deleted"), maybe a rank."""

    id: int | None
    username: str
    rank: Rank | None = None


class Accepted(Closed):
    """A 202: the work runs in the background whatever its outcome."""

    status: Literal["accepted"]


def open_object(description: str) -> dict[str, Any]:
    """A JSON Schema for an object we do not describe field by field (yet)."""
    return {"type": "object", "description": description}
