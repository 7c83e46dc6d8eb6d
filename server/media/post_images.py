"""Pictures attached to feed posts: decode an upload, refuse anything that is not really a PNG,
JPEG or WebP, re-encode it to two WebP files (640 and 1280 pixels wide, never enlarged) without
metadata, and keep them under `<MEDIA_DIR>/posts/`.

The checks and the clean-up are the avatars' (server/media/avatars.py, whose helpers this module
reuses): the decoded format decides, decompression bombs are refused from the header, the EXIF
orientation is applied, colours are converted to sRGB, and the files are rebuilt from raw pixels
so no EXIF, ICC or XMP survives. What differs: a photo keeps its aspect ratio (no square crop),
JPEGs are decoded at no less than 1280 pixels, and the key is the SHA-256 of the 1280 px file.

Everything here blocks (CPU and disk): the routes run it with `asyncio.to_thread`.
"""

from __future__ import annotations

import hashlib
import io
import re
from dataclasses import dataclass
from pathlib import Path

from PIL import Image

from server.media.avatars import (
    DECODED_FORMATS,
    DECODERS,
    MAX_PIXELS,
    ImageRejected,
    KeyedFiles,
    _in_srgb,
    _pixels,
    _upright,
    _webp,
)

WIDTHS = (1280, 640)  # largest first: each is resized from the one before; the first names the upload
URL_PREFIX = "/media/posts/"
KEY = re.compile(r"[0-9a-f]{64}")
UNSUPPORTED = "The image must be a PNG, JPEG or WebP picture."


class PostImageRejected(ImageRejected):
    """Refused as a post's picture: the `image` field error."""


@dataclass(frozen=True)
class ProcessedImage:
    """The re-encoded files of one upload: `files[width]` is the WebP at most `width` pixels wide;
    `width` x `height` are the dimensions of the largest one (what a client reserves space for)."""

    key: str
    width: int
    height: int
    files: dict[int, bytes]


def is_key(value: object) -> bool:
    return isinstance(value, str) and KEY.fullmatch(value) is not None


def file_name(key: str, width: int) -> str:
    return f"{key}-{width}.webp"


def image_urls(key: str) -> dict[str, str]:
    """`url`: the 1280 px file; `small`: the 640 px one (lists on narrow screens)."""
    return {"url": f"{URL_PREFIX}{file_name(key, WIDTHS[0])}", "small": f"{URL_PREFIX}{file_name(key, WIDTHS[1])}"}


def process_post_image(data: bytes, max_bytes: int) -> ProcessedImage:
    """Validate and re-encode an upload; raises PostImageRejected with a field error code:
    `empty_image`, `too_large`, `unsupported_image`, `too_many_pixels`, `corrupt_image`."""
    if not data:
        raise PostImageRejected("empty_image", "No image was sent.")
    if len(data) > max_bytes:
        raise PostImageRejected("too_large", f"The image is larger than {max_bytes} bytes.")
    image = _decode(data)
    source = _pixels(_in_srgb(_upright(image), image.info.get("icc_profile")))
    files: dict[int, bytes] = {}
    dimensions: dict[int, tuple[int, int]] = {}
    for width in WIDTHS:
        source = _fit(source, width)
        files[width] = _webp(source)
        dimensions[width] = source.size
    width, height = dimensions[WIDTHS[0]]
    return ProcessedImage(hashlib.sha256(files[WIDTHS[0]]).hexdigest(), width, height, files)


def _fit(image: Image.Image, width: int) -> Image.Image:
    """At most `width` wide, the aspect ratio kept; a smaller picture is never enlarged."""
    if image.width <= width:
        return image
    height = max(1, round(image.height * width / image.width))
    return image.resize((width, height), Image.Resampling.LANCZOS, reducing_gap=3.0)


def _decode(data: bytes) -> Image.Image:
    """The first frame, decoded, after every check that can be made from the header alone."""
    try:
        image = Image.open(io.BytesIO(data), formats=DECODERS)
    except (Image.DecompressionBombError, Image.DecompressionBombWarning):
        raise _too_many_pixels() from None
    except (OSError, SyntaxError, ValueError, EOFError):  # includes PIL.UnidentifiedImageError
        raise PostImageRejected("unsupported_image", UNSUPPORTED) from None
    if image.format not in DECODED_FORMATS:
        raise PostImageRejected("unsupported_image", UNSUPPORTED)
    if image.format in ("JPEG", "MPO"):
        image.draft("RGB", (WIDTHS[0], WIDTHS[0]))  # a large photo decodes at 1/2..1/8 scale
    width, height = image.size
    if width * height > MAX_PIXELS:
        raise _too_many_pixels()
    try:
        image.load()
    except (OSError, SyntaxError, ValueError, EOFError):  # e.g. "image file is truncated"
        raise PostImageRejected("corrupt_image", "The image is damaged or incomplete.") from None
    return image


def _too_many_pixels() -> PostImageRejected:
    side = int(MAX_PIXELS**0.5)
    return PostImageRejected("too_many_pixels", f"The image has too many pixels (at most {side} x {side}).")


class PostImageStore(KeyedFiles):
    """The files under `<MEDIA_DIR>/posts/`: `<key>-1280.webp` and `<key>-640.webp` per upload."""

    def __init__(self, media_path: Path) -> None:
        super().__init__(media_path / "posts", WIDTHS, is_key, file_name, "a post image")

    def save(self, image: ProcessedImage) -> None:
        self.save_files(image.key, image.files)

