"""Draw the app's store images: addon/icon.png (128x128) and addon/logo.png (250x100).

Home Assistant shows icon.png in the app list and logo.png on the app's page (developer docs,
apps/presentation: a square icon, 128x128 recommended; a logo around 250x100). They are drawn
here from shapes, so they can be changed and regenerated rather than edited as pixels: a
rounded square in a warm gradient holding a white sound wave (speech), and the logo: that
icon followed by the wave trailing off. Shapes are signed distance fields, anti-aliased by
their distance to each pixel's centre; the PNG is written with zlib, so nothing beyond NumPy
is needed and the same input gives the same bytes (tests/test_addon_images.py regenerates
them and compares).

Usage: script/draw-addon-images [OUTDIR]   (default: addon/)
"""

from __future__ import annotations

import struct
import sys
import zlib
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
ICON_SIZE = (128, 128)
LOGO_SIZE = (250, 100)
TOP = np.array([255, 138, 101], dtype=np.float64)  # coral
BOTTOM = np.array([216, 27, 96], dtype=np.float64)  # deep rose
WAVE = np.array([255, 255, 255], dtype=np.float64)
# Bar heights of the sound wave, as fractions of the tallest: a spoken syllable's envelope.
ENVELOPE = (0.28, 0.55, 0.85, 1.0, 0.7, 0.45, 0.8, 0.5, 0.25)


def rounded_box(x: np.ndarray, y: np.ndarray, cx, cy, half_w, half_h, radius) -> np.ndarray:
    """Signed distance (pixels) from each point to a rounded rectangle; negative inside."""
    qx = np.abs(x - cx) - half_w + radius
    qy = np.abs(y - cy) - half_h + radius
    outside = np.hypot(np.maximum(qx, 0), np.maximum(qy, 0))
    return outside + np.minimum(np.maximum(qx, qy), 0) - radius


def coverage(distance: np.ndarray) -> np.ndarray:
    """How much of a pixel a shape covers, from the distance at its centre (1 px ramp)."""
    return np.clip(0.5 - distance, 0.0, 1.0)


def grid(width: int, height: int) -> tuple[np.ndarray, np.ndarray]:
    y, x = np.mgrid[0:height, 0:width].astype(np.float64)
    return x + 0.5, y + 0.5


def wave(x, y, left: float, cy: float, bar_w: float, gap: float, tallest: float, envelope):
    """Coverage of a row of rounded bars (the sound wave) starting at ``left``."""
    cover = np.zeros_like(x)
    for i, level in enumerate(envelope):
        cx = left + i * (bar_w + gap) + bar_w / 2
        half_h = max(level * tallest / 2, bar_w / 2)
        bar = rounded_box(x, y, cx, cy, bar_w / 2, half_h, bar_w / 2)
        cover = np.maximum(cover, coverage(bar))
    return cover


def icon_layers(x, y, left: float, top: float, size: float) -> tuple[np.ndarray, np.ndarray]:
    """The icon's colour (RGB) and alpha at each point, for an icon of ``size`` at (left, top)."""
    t = np.clip((y - top) / size, 0.0, 1.0)[..., None]
    rgb = TOP * (1 - t) + BOTTOM * t
    alpha = coverage(
        rounded_box(x, y, left + size / 2, top + size / 2, size / 2, size / 2, size * 0.22)
    )
    bar_w = size * 0.055
    gap = size * 0.035
    width = len(ENVELOPE) * bar_w + (len(ENVELOPE) - 1) * gap
    glyph = wave(x, y, left + (size - width) / 2, top + size / 2, bar_w, gap, size * 0.56, ENVELOPE)
    rgb = rgb * (1 - glyph[..., None]) + WAVE * glyph[..., None]
    return rgb, alpha


def draw_icon() -> np.ndarray:
    x, y = grid(*ICON_SIZE)
    rgb, alpha = icon_layers(x, y, 0.0, 0.0, ICON_SIZE[0])
    return to_rgba(rgb, alpha)


def draw_logo() -> np.ndarray:
    """The icon at the left, then the wave trailing off in the icon's lower colour."""
    width, height = LOGO_SIZE
    x, y = grid(width, height)
    size = height - 8.0
    rgb, alpha = icon_layers(x, y, 4.0, 4.0, size)
    bar_w, gap = size * 0.06, size * 0.05
    start = 4.0 + size + gap * 2
    fits = int((width - start - 2) // (bar_w + gap))  # whole bars only, none cut at the edge
    trail = tuple(level * 0.88**i for i, level in enumerate((ENVELOPE * 2)[:fits]))
    tail = wave(x, y, start, height / 2, bar_w, gap, size * 0.8, trail)
    ramp = np.clip((x - size) / (width - size), 0.0, 1.0)[..., None]
    tail_rgb = BOTTOM * (1 - ramp) + TOP * ramp
    rgb = rgb * alpha[..., None] + tail_rgb * (1 - alpha[..., None])
    return to_rgba(rgb, np.maximum(alpha, tail))


def to_rgba(rgb: np.ndarray, alpha: np.ndarray) -> np.ndarray:
    pixels = np.concatenate([rgb, alpha[..., None] * 255.0], axis=-1)
    return np.clip(np.rint(pixels), 0, 255).astype(np.uint8)


def png_bytes(pixels: np.ndarray) -> bytes:
    """An 8-bit RGBA PNG of ``pixels`` (height x width x 4), every row with filter 0."""
    height, width, _ = pixels.shape
    rows = np.concatenate([np.zeros((height, 1), np.uint8), pixels.reshape(height, -1)], axis=1)

    def chunk(kind: bytes, data: bytes) -> bytes:
        body = kind + data
        return struct.pack(">I", len(data)) + body + struct.pack(">I", zlib.crc32(body))

    header = struct.pack(">IIBBBBB", width, height, 8, 6, 0, 0, 0)
    return b"".join(
        (
            b"\x89PNG\r\n\x1a\n",
            chunk(b"IHDR", header),
            chunk(b"IDAT", zlib.compress(rows.tobytes(), 9)),
            chunk(b"IEND", b""),
        )
    )


def main(argv: list[str]) -> int:
    out = Path(argv[1]) if len(argv) > 1 else ROOT / "addon"
    out.mkdir(parents=True, exist_ok=True)
    for name, pixels in (("icon.png", draw_icon()), ("logo.png", draw_logo())):
        (out / name).write_bytes(png_bytes(pixels))
        print(f"draw-addon-images: {out / name} ({pixels.shape[1]}x{pixels.shape[0]})")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
