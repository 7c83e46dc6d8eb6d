"""Where a member's avatar is loaded from: their upload, else their Minecraft head, else nothing.

`users.avatar_url` holds the upload's content key (the SHA-256 of the re-encoded 256 px image),
not a URL: the files are named after it, so their URLs never change and are cached forever.
Any other value in the column (an OAuth sign-up stores the provider's picture URL there) is not
an upload: it never becomes a media path and the fallbacks apply.
"""

from __future__ import annotations

import re
from typing import Any
from urllib.parse import quote

SIZES = {"small": 64, "large": 256}
MEDIA_PREFIX = "/media/avatars/"
AVATAR_KEY = re.compile(r"[0-9a-f]{64}")


def is_avatar_key(value: object) -> bool:
    """True for an upload's content key (64 lower-case hex digits), the only values named on disk."""
    return isinstance(value, str) and AVATAR_KEY.fullmatch(value) is not None


def file_name(key: str, size: int) -> str:
    """The stored (and served) file of one size of an upload: `<key>-<size>.webp`."""
    return f"{key}-{size}.webp"


def uploaded_avatar(key: str) -> dict[str, str]:
    return {name: f"{MEDIA_PREFIX}{file_name(key, size)}" for name, size in SIZES.items()}


def avatar_urls(template: str, row: Any) -> dict[str, str] | None:
    """`row` has `avatar_url`, `minecraft_uuid` and `minecraft_username`; None: show initials."""
    key = row["avatar_url"]
    if is_avatar_key(key):
        return uploaded_avatar(key)
    uuid, name = row["minecraft_uuid"], row["minecraft_username"]
    if template and uuid:
        return {size_name: template.format(uuid=quote(uuid, safe=""), name=quote(name or "", safe=""), size=size)
                for size_name, size in SIZES.items()}
    return None
