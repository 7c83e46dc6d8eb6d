"""Avatar images: decode an upload, refuse anything that is not really a PNG, JPEG or WebP,
re-encode it to two square WebP files without metadata, and keep them under `MEDIA_DIR`.

Why it works this way:
- The bytes are decoded (Pillow, from memory) and the *decoded* format decides: a file's name,
  its Content-Type and its first bytes are all the client's word. Only the PNG, JPEG and WebP
  openers are tried at all, so a GIF, a BMP, an SVG or a PSD never reaches a decoder.
- Decompression bombs are refused from the header, before any pixel is decoded: Pillow's own
  guard (an error past 2 x `Image.MAX_IMAGE_PIXELS`, a warning past it) and `MAX_PIXELS`, far
  lower, because no avatar needs more. JPEGs decode at a reduced scale (`draft`), so a large
  photo stays cheap; the limit applies to what is really decoded.
- Nothing of the upload survives but its pixels: the EXIF orientation is applied first, colours
  are converted to sRGB when the file carries an ICC profile, and the result is rebuilt from raw
  pixels, so no EXIF (GPS, camera), ICC or XMP can reach the saved files. Animated images keep
  their first frame.
- The key is the SHA-256 of the 256 px file: the files are named after it, so their URLs are
  immutable (cached for a year) and one picture uploaded by several members is stored once.
- A file is written under a temporary name in the same directory, synced, then renamed: readers
  (other replicas on a shared volume too) see a whole file or none.

Everything here blocks (CPU and disk): the routes run it with `asyncio.to_thread`.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import os
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from PIL import Image, ImageCms, ImageOps

from server.media.urls import SIZES, file_name, is_avatar_key

DECODERS = ("PNG", "JPEG", "WEBP")
# What those openers may report: JPEG's turns a phone's multi-picture JPEG into "MPO".
DECODED_FORMATS = frozenset({"PNG", "JPEG", "MPO", "WEBP"})
# Decoded pixels at most (4096 x 4096): about 64 MB as RGBA while it is being resized.
MAX_PIXELS = 4096 * 4096
OUTPUT_SIZES = tuple(sorted(SIZES.values(), reverse=True))  # (256, 64); the first names the upload
WEBP_QUALITY = 85
SIXTEEN_BIT_GREYS = frozenset({"I", "I;16", "I;16B", "I;16L", "I;16N"})
UNSUPPORTED = "The avatar must be a PNG, JPEG or WebP image."


class ImageRejected(ValueError):
    """An upload that is not an acceptable picture; `code` and `message` become a field error."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


class AvatarRejected(ImageRejected):
    """Refused as an avatar: the `avatar` field error."""


@dataclass(frozen=True)
class ProcessedAvatar:
    """The re-encoded files of one upload: `files[size]` is the WebP of `size` x `size` pixels."""

    key: str
    files: dict[int, bytes]


def process_avatar(data: bytes, max_bytes: int) -> ProcessedAvatar:
    """Validate and re-encode an upload; raises AvatarRejected with a field error code.

    Codes: `empty_image`, `too_large` (bytes), `unsupported_image` (not PNG/JPEG/WebP, or not an
    image), `too_many_pixels` (dimensions), `corrupt_image` (recognised but cannot be decoded).
    """
    if not data:
        raise AvatarRejected("empty_image", "No image was sent.")
    if len(data) > max_bytes:
        raise AvatarRejected("too_large", f"The image is larger than {max_bytes} bytes.")
    image = _decode(data)
    icc_profile = image.info.get("icc_profile")
    square = _square(_pixels(_in_srgb(_upright(image), icc_profile)))
    files: dict[int, bytes] = {}
    source = square
    for size in OUTPUT_SIZES:  # largest first: each size is resized from the one before
        source = source.resize((size, size), Image.Resampling.LANCZOS, reducing_gap=3.0)
        files[size] = _webp(source)
    return ProcessedAvatar(hashlib.sha256(files[OUTPUT_SIZES[0]]).hexdigest(), files)


def _decode(data: bytes) -> Image.Image:
    """The first frame, decoded, after every check that can be made from the header alone."""
    try:
        image = Image.open(io.BytesIO(data), formats=DECODERS)
    except (Image.DecompressionBombError, Image.DecompressionBombWarning):
        raise _too_many_pixels() from None
    except (OSError, SyntaxError, ValueError, EOFError):  # includes PIL.UnidentifiedImageError
        raise AvatarRejected("unsupported_image", UNSUPPORTED) from None
    if image.format not in DECODED_FORMATS:  # `formats` already keeps other openers away
        raise AvatarRejected("unsupported_image", UNSUPPORTED)
    if image.format in ("JPEG", "MPO"):
        image.draft("RGB", (OUTPUT_SIZES[0], OUTPUT_SIZES[0]))  # decode at 1/2..1/8 scale when large
    width, height = image.size
    if width * height > MAX_PIXELS:
        raise _too_many_pixels()
    try:
        image.load()
    except (OSError, SyntaxError, ValueError, EOFError):  # e.g. "image file is truncated"
        raise AvatarRejected("corrupt_image", "The image is damaged or incomplete.") from None
    return image


def _too_many_pixels() -> AvatarRejected:
    side = int(MAX_PIXELS**0.5)
    return AvatarRejected("too_many_pixels", f"The image has too many pixels (at most {side} x {side}).")


def _upright(image: Image.Image) -> Image.Image:
    """Apply the EXIF orientation (phones store photos sideways and say so in EXIF)."""
    try:
        return ImageOps.exif_transpose(image)
    except Exception:  # a malformed EXIF block must not cost the picture: keep it as stored
        return image


def _in_srgb(image: Image.Image, icc_profile: bytes | None) -> Image.Image:
    """Convert to sRGB when the file names its colour space, since the profile is not kept."""
    if not icc_profile or image.mode not in ("RGB", "RGBA", "CMYK", "L"):
        return image
    try:
        source = ImageCms.ImageCmsProfile(io.BytesIO(icc_profile))
        converted = ImageCms.profileToProfile(image, source, ImageCms.createProfile("sRGB"),
                                              outputMode="RGBA" if image.mode == "RGBA" else "RGB")
    except (ImageCms.PyCMSError, OSError, ValueError, TypeError):  # a broken or mismatched profile
        return image
    return converted if converted is not None else image


def _pixels(image: Image.Image) -> Image.Image:
    """RGB, or RGBA when the picture really has transparency (16-bit greys scaled, not clipped)."""
    if image.mode in SIXTEEN_BIT_GREYS:
        image = image.convert("I").point(lambda value: value / 256).convert("L")
    mode = "RGBA" if image.has_transparency_data else "RGB"
    if image.mode != mode:
        image = image.convert(mode)
    if mode == "RGBA" and image.getchannel("A").getextrema() == (255, 255):  # alpha that hides nothing
        image = image.convert("RGB")
    return image


def _square(image: Image.Image) -> Image.Image:
    """The centred square: avatars are shown in circles and squares, never stretched."""
    width, height = image.size
    side = min(width, height)
    left, top = (width - side) // 2, (height - side) // 2
    return image.crop((left, top, left + side, top + side))


def _webp(image: Image.Image) -> bytes:
    """Encode the pixels alone: a fresh image from raw bytes carries no info, EXIF, ICC or XMP."""
    clean = Image.frombytes(image.mode, image.size, image.tobytes())
    buffer = io.BytesIO()
    clean.save(buffer, "WEBP", quality=WEBP_QUALITY, method=4)
    return buffer.getvalue()


class KeyedFiles:
    """Files named by an upload's content key and a produced size, in one directory of MEDIA_DIR.

    MEDIA_DIR may be a local directory or a shared mount (a volume, an object store's FUSE mount)
    that every replica sees; only whole files are ever visible there.
    """

    def __init__(self, directory: Path, sizes: tuple[int, ...], is_key: Callable[[object], bool],
                 name: Callable[[str, int], str], what: str) -> None:
        self.directory = directory
        self.sizes = sizes
        self.is_key = is_key
        self.name = name
        self.what = what  # for errors: "an avatar", "a post image"

    def path(self, key: str, size: int) -> Path:
        """Only a content key and a produced size name a file: nothing else reaches the disk."""
        if not self.is_key(key) or size not in self.sizes:
            raise ValueError(f"not {self.what} file")
        return self.directory / self.name(key, size)

    def save_files(self, key: str, files: dict[int, bytes]) -> None:
        self.directory.mkdir(parents=True, exist_ok=True)
        for size in sorted(files):  # the small one first: the large one completes the upload
            write_atomically(self.path(key, size), files[size])

    def read(self, key: str, size: int) -> bytes | None:
        try:
            return self.path(key, size).read_bytes()
        except FileNotFoundError:
            return None

    def delete(self, key: str) -> None:
        """Remove an upload's files (missing ones are fine); values that are not keys are ignored."""
        if not self.is_key(key):
            return
        for size in self.sizes:
            self.path(key, size).unlink(missing_ok=True)


class AvatarStore(KeyedFiles):
    """The files under `<MEDIA_DIR>/avatars/`: `<key>-256.webp` and `<key>-64.webp` per upload."""

    def __init__(self, media_path: Path) -> None:
        super().__init__(media_path / "avatars", OUTPUT_SIZES, is_avatar_key, file_name, "an avatar")

    def save(self, avatar: ProcessedAvatar) -> None:
        self.save_files(avatar.key, avatar.files)


def write_atomically(target: Path, data: bytes) -> None:
    """Write `data` to `target` through a synced temporary file and a rename (never a half file)."""
    handle, temporary = tempfile.mkstemp(dir=target.parent, prefix=".upload-", suffix=".tmp")
    try:
        with os.fdopen(handle, "wb") as file:
            file.write(data)
            file.flush()
            os.fsync(file.fileno())
        os.chmod(temporary, 0o644)  # mkstemp makes 0600; a proxy serving MEDIA_DIR may need to read it
        os.replace(temporary, target)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(temporary)
        raise
