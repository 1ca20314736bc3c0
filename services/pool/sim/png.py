"""Pure-python PNG and animated PNG (APNG) codec for 8-bit RGB images.

Runs without Pillow: the simulated ComfyUI host renders its outputs with this.
"""

from __future__ import annotations

import struct
import zlib
from collections.abc import Mapping, Sequence

SIGNATURE = b"\x89PNG\r\n\x1a\n"


class PngError(ValueError):
    """The bytes are not a PNG this decoder understands."""


def _chunk(kind: bytes, data: bytes) -> bytes:
    crc = zlib.crc32(kind + data) & 0xFFFFFFFF
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", crc)


def _ihdr(width: int, height: int) -> bytes:
    return _chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0))


def _text_chunks(text: Mapping[str, str] | None) -> bytes:
    out = b""
    for key, value in (text or {}).items():
        out += _chunk(b"tEXt", key.encode("latin-1") + b"\x00" + value.encode("latin-1", "replace"))
    return out


def _scanlines(width: int, height: int, rgb: bytes, level: int) -> bytes:
    stride = width * 3
    if len(rgb) != stride * height:
        raise PngError(f"expected {stride * height} bytes of RGB, got {len(rgb)}")
    raw = b"".join(b"\x00" + rgb[y * stride:(y + 1) * stride] for y in range(height))
    return zlib.compress(raw, level)


def encode_png(width: int, height: int, rgb: bytes, text: Mapping[str, str] | None = None,
               level: int = 6) -> bytes:
    """Encode one RGB frame (row-major, 3 bytes a pixel) as a PNG with optional tEXt chunks."""
    return (SIGNATURE + _ihdr(width, height) + _text_chunks(text)
            + _chunk(b"IDAT", _scanlines(width, height, rgb, level)) + _chunk(b"IEND", b""))


def encode_apng(width: int, height: int, frames: Sequence[bytes], fps: float = 6.0,
                text: Mapping[str, str] | None = None, level: int = 4) -> bytes:
    """Encode RGB frames as an animated PNG that loops forever at ``fps``."""
    if not frames:
        raise PngError("an animation needs at least one frame")
    # frame delay as a fraction delay_num/delay_den seconds
    delay_den = 1000
    delay_num = max(1, round(delay_den / max(fps, 0.001)))
    out = SIGNATURE + _ihdr(width, height) + _chunk(b"acTL", struct.pack(">II", len(frames), 0))
    out += _text_chunks(text)
    seq = 0
    for index, rgb in enumerate(frames):
        fctl = struct.pack(">IIIIIHHBB", seq, width, height, 0, 0, delay_num, delay_den, 0, 0)
        out += _chunk(b"fcTL", fctl)
        seq += 1
        data = _scanlines(width, height, rgb, level)
        if index == 0:
            out += _chunk(b"IDAT", data)
        else:
            out += _chunk(b"fdAT", struct.pack(">I", seq) + data)
            seq += 1
    return out + _chunk(b"IEND", b"")


def _paeth(a: int, b: int, c: int) -> int:
    p = a + b - c
    pa, pb, pc = abs(p - a), abs(p - b), abs(p - c)
    if pa <= pb and pa <= pc:
        return a
    return b if pb <= pc else c


def _unfilter(data: bytes, width: int, height: int, bpp: int) -> bytes:
    stride = width * bpp
    out = bytearray()
    prev = bytearray(stride)
    pos = 0
    for _ in range(height):
        ftype = data[pos]
        line = bytearray(data[pos + 1:pos + 1 + stride])
        pos += 1 + stride
        if ftype == 1:
            for i in range(bpp, stride):
                line[i] = (line[i] + line[i - bpp]) & 0xFF
        elif ftype == 2:
            for i in range(stride):
                line[i] = (line[i] + prev[i]) & 0xFF
        elif ftype == 3:
            for i in range(stride):
                left = line[i - bpp] if i >= bpp else 0
                line[i] = (line[i] + ((left + prev[i]) >> 1)) & 0xFF
        elif ftype == 4:
            for i in range(stride):
                left = line[i - bpp] if i >= bpp else 0
                up_left = prev[i - bpp] if i >= bpp else 0
                line[i] = (line[i] + _paeth(left, prev[i], up_left)) & 0xFF
        elif ftype != 0:
            raise PngError(f"bad filter type {ftype}")
        out += line
        prev = line
    return bytes(out)


def decode_png(data: bytes) -> tuple[int, int, bytes]:
    """Decode an 8-bit non-interlaced grey/RGB/RGBA PNG to (width, height, RGB bytes)."""
    if not data.startswith(SIGNATURE):
        raise PngError("not a PNG")
    pos = len(SIGNATURE)
    width = height = colour = 0
    idat = b""
    while pos + 8 <= len(data):
        (length,) = struct.unpack(">I", data[pos:pos + 4])
        kind = data[pos + 4:pos + 8]
        body = data[pos + 8:pos + 8 + length]
        pos += 12 + length
        if kind == b"IHDR":
            width, height, depth, colour, _, _, interlace = struct.unpack(">IIBBBBB", body)
            if depth != 8 or interlace or colour not in (0, 2, 4, 6):
                raise PngError("only 8-bit non-interlaced grey/RGB/RGBA PNGs are supported")
        elif kind == b"IDAT":
            idat += body
        elif kind == b"IEND":
            break
    if not width:
        raise PngError("PNG without IHDR")
    bpp = {0: 1, 2: 3, 4: 2, 6: 4}[colour]
    try:
        pixels = _unfilter(zlib.decompress(idat), width, height, bpp)
    except (zlib.error, IndexError) as exc:
        raise PngError(f"corrupt PNG data: {exc}") from exc
    if bpp == 3:
        return width, height, pixels
    if bpp == 4:
        return width, height, b"".join(pixels[i:i + 3] for i in range(0, len(pixels), 4))
    greys = pixels[::bpp]
    return width, height, bytes(v for g in greys for v in (g, g, g))


def read_text_chunks(data: bytes) -> dict[str, str]:
    """Return the tEXt chunks of a PNG as a dict (used by tests and debugging)."""
    out: dict[str, str] = {}
    pos = len(SIGNATURE)
    while pos + 8 <= len(data):
        (length,) = struct.unpack(">I", data[pos:pos + 4])
        kind = data[pos + 4:pos + 8]
        if kind == b"tEXt":
            key, _, value = data[pos + 8:pos + 8 + length].partition(b"\x00")
            out[key.decode("latin-1")] = value.decode("latin-1")
        pos += 12 + length
    return out
