"""A loss curve as a PNG, with NumPy and zlib only (no plotting library)."""

from __future__ import annotations

import struct
import zlib

import numpy as np

# A 3×5 pixel font for the digits and the few letters the axis labels use.
GLYPHS = {
    "0": "111101101101111", "1": "010110010010111", "2": "111001111100111", "3": "111001111001111",
    "4": "101101111001001", "5": "111100111001111", "6": "111100111101111", "7": "111001001001001",
    "8": "111101111101111", "9": "111101111001111", ".": "000000000000010", " ": "000000000000000",
    "t": "010111010010011", "r": "000110101100100", "a": "000011101101011", "i": "010000010010010",
    "n": "000110101101101", "v": "000101101101010", "l": "110010010010111", "s": "000011110001110",
    "e": "000111111100011", "p": "000110101110100",
}


def _text(img, x, y, s, color, scale=2):
    for ch in s:
        g = GLYPHS.get(ch, GLYPHS[" "])
        for r in range(5):
            for c in range(3):
                if g[r * 3 + c] == "1":
                    img[y + r * scale:y + (r + 1) * scale, x + c * scale:x + (c + 1) * scale] = color
        x += 4 * scale


def _line(img, x0, y0, x1, y1, color):
    n = int(max(abs(x1 - x0), abs(y1 - y0))) + 1
    xs = np.linspace(x0, x1, n).round().astype(int)
    ys = np.linspace(y0, y1, n).round().astype(int)
    ok = (xs >= 0) & (xs < img.shape[1]) & (ys >= 0) & (ys < img.shape[0])
    img[ys[ok], xs[ok]] = color
    img[np.clip(ys[ok] + 1, 0, img.shape[0] - 1), xs[ok]] = color


def loss_png(path, series: dict[str, tuple[list[int], list[float]]], width=640, height=400) -> None:
    """Plot each (steps, losses) series; training in blue, validation in orange."""
    colors = [(31, 119, 180), (255, 127, 14), (44, 160, 44)]
    img = np.full((height, width, 3), 255, dtype=np.uint8)
    left, right, top, bottom = 60, width - 20, 20, height - 40
    img[top:bottom, left] = 0
    img[bottom, left:right] = 0
    xs = [x for s, _ in series.values() for x in s]
    ys = [y for _, v in series.values() for y in v if np.isfinite(y)]
    if xs and ys:
        x_lo, x_hi = min(xs), max(max(xs), min(xs) + 1)
        y_lo, y_hi = min(ys), max(max(ys), min(ys) + 1e-6)

        def px(x, y):
            return (left + (x - x_lo) / (x_hi - x_lo) * (right - left),
                    bottom - (y - y_lo) / (y_hi - y_lo) * (bottom - top))
        for i, (name, (steps, vals)) in enumerate(series.items()):
            pts = [px(x, y) for x, y in zip(steps, vals, strict=True) if np.isfinite(y)]
            for (a, b), (c, d) in zip(pts, pts[1:], strict=False):
                _line(img, a, b, c, d, colors[i % len(colors)])
            _text(img, right - 120, top + 14 * i, name, colors[i % len(colors)])
        _text(img, 4, top, f"{y_hi:.2f}", (0, 0, 0))
        _text(img, 4, bottom - 10, f"{y_lo:.2f}", (0, 0, 0))
        _text(img, left, bottom + 10, f"{x_lo}", (0, 0, 0))
        _text(img, right - 60, bottom + 10, f"{x_hi}", (0, 0, 0))
    raw = b"".join(b"\x00" + img[r].tobytes() for r in range(height))

    def chunk(kind, data):
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)
    png = b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)) \
        + chunk(b"IDAT", zlib.compress(raw, 9)) + chunk(b"IEND", b"")
    with open(path, "wb") as f:
        f.write(png)
