"""The app's store images: the sizes Home Assistant's docs ask for, valid PNGs with a
transparent outline, and exactly what script/draw-addon-images draws (so they can be redrawn)."""

from __future__ import annotations

import struct
import subprocess
import sys
import zlib
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parent.parent
ADDON = ROOT / "addon"


def read_png(path: Path) -> np.ndarray:
    """The pixels of an 8-bit RGBA PNG with unfiltered rows (what the script writes); every
    chunk's CRC is checked."""
    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n", path
    pos, chunks = 8, {}
    while pos < len(data):
        (length,) = struct.unpack(">I", data[pos : pos + 4])
        kind, body = data[pos + 4 : pos + 8], data[pos + 8 : pos + 8 + length]
        (crc,) = struct.unpack(">I", data[pos + 8 + length : pos + 12 + length])
        assert zlib.crc32(kind + body) == crc, (path, kind)
        chunks[kind] = chunks.get(kind, b"") + body
        pos += 12 + length
    width, height, depth, colour, _, _, _ = struct.unpack(">IIBBBBB", chunks[b"IHDR"])
    assert (depth, colour) == (8, 6), path  # 8-bit RGBA
    rows = np.frombuffer(zlib.decompress(chunks[b"IDAT"]), np.uint8).reshape(height, -1)
    assert (rows[:, 0] == 0).all()  # filter type 0 on every row
    return rows[:, 1:].reshape(height, width, 4)


@pytest.mark.parametrize(("name", "size"), [("icon.png", (128, 128)), ("logo.png", (250, 100))])
def test_store_images_have_the_recommended_sizes(name, size):
    pixels = read_png(ADDON / name)
    assert (pixels.shape[1], pixels.shape[0]) == size
    alpha = pixels[..., 3]
    assert alpha[0, 0] == 0 and alpha[-1, -1] == 0  # rounded corners: transparent
    assert (alpha == 255).mean() > 0.3  # and a drawing, not an empty canvas
    opaque = pixels[alpha == 255][:, :3]
    assert len(np.unique(opaque, axis=0)) > 50  # gradient and wave, not one flat colour
    assert (opaque == 255).all(axis=1).any()  # the white wave on the icon


def test_committed_images_are_what_the_script_draws(tmp_path):
    done = subprocess.run(
        [sys.executable, str(ROOT / "script" / "draw_addon_images.py"), str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    for name in ("icon.png", "logo.png"):
        assert (tmp_path / name).read_bytes() == (ADDON / name).read_bytes(), (
            f"addon/{name} differs from what script/draw-addon-images draws: run it"
        )
