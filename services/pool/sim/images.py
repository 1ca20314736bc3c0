"""Value types flowing between simulated ComfyUI nodes, and deterministic image rendering."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

MAX_PIXELS = 2048 * 2048 * 4  # beyond this a simulated GPU runs out of memory
_INVERT = bytes(255 - i for i in range(256))
_BANDS = 16


class OutOfMemory(Exception):
    """The simulated GPU cannot hold this many pixels."""


@dataclass(frozen=True)
class Picture:
    """An IMAGE batch: RGB frames of ``width`` x ``height``."""

    width: int
    height: int
    frames: tuple[bytes, ...]

    def __repr__(self) -> str:
        return f"tensor(shape=[{len(self.frames)}, {self.height}, {self.width}, 3])"


@dataclass(frozen=True)
class Latent:
    """A LATENT batch; ``key`` determines what it decodes to."""

    width: int
    height: int
    batch: int
    key: str

    def __repr__(self) -> str:
        return f"{{'samples': tensor(shape=[{self.batch}, 4, {self.height // 8}, {self.width // 8}])}}"


@dataclass(frozen=True)
class Handle:
    """MODEL / CLIP / VAE / CONDITIONING / MASK stand-in: a type name and an identity key."""

    kind: str
    key: str

    def __repr__(self) -> str:
        return f"<{self.kind} {self.key[:12]}>"


def _check(width: int, height: int, batch: int) -> None:
    if width * height * batch > MAX_PIXELS:
        raise OutOfMemory(f"Allocation on device would exceed the simulated 24 GB of VRAM "
                          f"({batch}x{width}x{height})")


def rgb_of(color: int) -> tuple[int, int, int]:
    """ComfyUI colour integer (0xRRGGBB) to an RGB triple."""
    return (color >> 16) & 0xFF, (color >> 8) & 0xFF, color & 0xFF


def solid(width: int, height: int, batch: int, color: int) -> Picture:
    """A batch of one-colour frames (EmptyImage)."""
    _check(width, height, batch)
    frame = bytes(rgb_of(color)) * (width * height)
    return Picture(width, height, (frame,) * batch)


def _palette(key: str) -> list[tuple[int, int, int]]:
    d = hashlib.sha256(key.encode()).digest()
    return [(d[i], d[i + 1], d[i + 2]) for i in range(0, 9, 3)]


def _band_rows(width: int, key: str) -> list[bytes]:
    a, b, c = _palette(key)
    base = [tuple(a[k] + (b[k] - a[k]) * x // max(width - 1, 1) for k in range(3)) for x in range(width)]
    rows = []
    for band in range(_BANDS):
        t = band / (_BANDS - 1)
        rows.append(bytes(round(px[k] + (c[k] - px[k]) * t) for px in base for k in range(3)))
    return rows


def pattern(width: int, height: int, batch: int, key: str) -> Picture:
    """Deterministic gradient frames whose colours derive from ``key``; frames drift for animation."""
    _check(width, height, batch)
    rows = _band_rows(width, key)
    frames = []
    for index in range(batch):
        shift = (index * width // max(batch, 1)) * 3
        shifted = [r[shift:] + r[:shift] for r in rows]
        frames.append(b"".join(shifted[y * _BANDS // height] for y in range(height)))
    return Picture(width, height, tuple(frames))


def invert(pic: Picture) -> Picture:
    """Colour-inverted copy (ImageInvert)."""
    return Picture(pic.width, pic.height, tuple(f.translate(_INVERT) for f in pic.frames))


def thumbnail(pic: Picture, frame: int = 0, max_side: int = 64) -> tuple[int, int, bytes]:
    """Nearest-neighbour downscale of one frame, for previews."""
    scale = max(pic.width, pic.height) / max_side
    if scale <= 1:
        return pic.width, pic.height, pic.frames[frame]
    w, h = max(1, int(pic.width / scale)), max(1, int(pic.height / scale))
    src = pic.frames[frame]
    xs = [int(x * scale) * 3 for x in range(w)]
    out = bytearray()
    for y in range(h):
        row = int(y * scale) * pic.width * 3
        for x in xs:
            out += src[row + x:row + x + 3]
    return w, h, bytes(out)


def fade(rgb: bytes, amount: float) -> bytes:
    """Blend pixels toward mid-grey: amount 0 is grey, 1 is the original (sampler previews)."""
    return bytes(int(128 + (v - 128) * amount) for v in rgb)
