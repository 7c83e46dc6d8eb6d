"""Draw the Vonix PWA icons (emerald V on slate) as PNG files, with no imaging library.

Run once after changing the design: `python scripts/make_icons.py`; the PNGs are committed under
static/icons/. Pixels are 3x3 supersampled for smooth edges and written with zlib by hand.
"""

from __future__ import annotations

import struct
import sys
import zlib
from pathlib import Path

EMERALD = (0x10, 0xB9, 0x81)
SLATE = (0x0F, 0x17, 0x2A)
WHITE = (0xFF, 0xFF, 0xFF)
V_SHAPE = [(0.22, 0.27), (0.37, 0.27), (0.5, 0.6), (0.63, 0.27), (0.78, 0.27), (0.57, 0.77), (0.43, 0.77)]
OUT = Path(__file__).resolve().parent.parent / "static" / "icons"


def inside_polygon(x: float, y: float, points: list[tuple[float, float]]) -> bool:
    result = False
    j = len(points) - 1
    for i, (xi, yi) in enumerate(points):
        xj, yj = points[j]
        if (yi > y) != (yj > y) and x < (xj - xi) * (y - yi) / (yj - yi) + xi:
            result = not result
        j = i
    return result


def inside_rounded(x: float, y: float, radius: float) -> bool:
    cx, cy = min(max(x, radius), 1 - radius), min(max(y, radius), 1 - radius)
    return (x - cx) ** 2 + (y - cy) ** 2 <= radius**2


def draw(size: int, *, background: tuple[int, int, int] | None, corner: float, scale: float,
         mark: tuple[int, int, int]) -> bytes:
    shape = [(0.5 + (px - 0.5) * scale, 0.5 + (py - 0.5) * scale) for px, py in V_SHAPE]
    samples = 3
    rows = []
    for row in range(size):
        line = bytearray([0])  # filter: none
        for col in range(size):
            r = g = b = a = 0.0
            for sy in range(samples):
                for sx in range(samples):
                    x = (col + (sx + 0.5) / samples) / size
                    y = (row + (sy + 0.5) / samples) / size
                    if inside_polygon(x, y, shape):
                        colour, alpha = mark, 1.0
                    elif background is not None and (corner == 0 or inside_rounded(x, y, corner)):
                        colour, alpha = background, 1.0
                    else:
                        continue
                    r, g, b, a = r + colour[0], g + colour[1], b + colour[2], a + alpha
            n = samples * samples
            if a:
                line += bytes((round(r / a), round(g / a), round(b / a), round(255 * a / n)))
            else:
                line += b"\0\0\0\0"
        rows.append(bytes(line))
    return png(size, size, b"".join(rows))


def png(width: int, height: int, raw: bytes) -> bytes:
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)

    header = struct.pack(">IIBBBBB", width, height, 8, 6, 0, 0, 0)  # 8-bit RGBA
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(raw, 9)) + chunk(b"IEND", b"")


ICONS = {
    "icon-192.png": dict(size=192, background=SLATE, corner=0.22, scale=1.0, mark=EMERALD),
    "icon-512.png": dict(size=512, background=SLATE, corner=0.22, scale=1.0, mark=EMERALD),
    # maskable: full bleed, the mark inside the central safe circle (radius 40%)
    "icon-maskable-512.png": dict(size=512, background=SLATE, corner=0, scale=0.72, mark=EMERALD),
    "badge-96.png": dict(size=96, background=None, corner=0, scale=1.15, mark=WHITE),  # notification badge
    "favicon-32.png": dict(size=32, background=SLATE, corner=0.2, scale=1.0, mark=EMERALD),
}


def main() -> int:
    OUT.mkdir(parents=True, exist_ok=True)
    for name, spec in ICONS.items():
        (OUT / name).write_bytes(draw(**spec))  # type: ignore[arg-type]
        print(f"wrote static/icons/{name}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
