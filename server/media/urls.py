"""Where a member's avatar is loaded from: their upload, else their Minecraft head, else nothing.

`users.avatar_url` holds the upload's content key (the SHA-256 of the re-encoded 256 px image),
not a URL: the files are named after it, so their URLs never change and are cached forever.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import quote

SIZES = {"small": 64, "large": 256}
MEDIA_PREFIX = "/media/avatars/"


def uploaded_avatar(key: str) -> dict[str, str]:
    return {name: f"{MEDIA_PREFIX}{key}-{size}.webp" for name, size in SIZES.items()}


def avatar_urls(template: str, row: Any) -> dict[str, str] | None:
    """`row` has `avatar_url`, `minecraft_uuid` and `minecraft_username`; None: show initials."""
    key = row["avatar_url"]
    if key:
        return uploaded_avatar(key)
    uuid, name = row["minecraft_uuid"], row["minecraft_username"]
    if template and uuid:
        return {size_name: template.format(uuid=quote(uuid, safe=""), name=quote(name or "", safe=""), size=size)
                for size_name, size in SIZES.items()}
    return None
