"""Pure-python PNG/APNG codec."""

import struct
import zlib

import pytest

from services.pool.sim import images
from services.pool.sim.png import PngError, decode_png, encode_apng, encode_png, read_text_chunks


def _chunks(data: bytes) -> list[bytes]:
    out, pos = [], 8
    while pos < len(data):
        (length,) = struct.unpack(">I", data[pos:pos + 4])
        kind, body = data[pos + 4:pos + 8], data[pos + 8:pos + 8 + length]
        (crc,) = struct.unpack(">I", data[pos + 8 + length:pos + 12 + length])
        assert crc == zlib.crc32(kind + body) & 0xFFFFFFFF
        out.append(kind)
        pos += 12 + length
    return out


def test_round_trip_and_text_chunk() -> None:
    pic = images.pattern(37, 21, 1, "seed")
    data = encode_png(37, 21, pic.frames[0], {"prompt": '{"1": {}}'})
    assert decode_png(data) == (37, 21, pic.frames[0])
    assert read_text_chunks(data) == {"prompt": '{"1": {}}'}
    assert _chunks(data) == [b"IHDR", b"tEXt", b"IDAT", b"IEND"]


def test_apng_has_one_control_chunk_per_frame() -> None:
    pic = images.pattern(16, 8, 4, "video")
    assert len(set(pic.frames)) == 4
    data = encode_apng(16, 8, pic.frames, fps=8.0)
    kinds = _chunks(data)
    assert kinds.count(b"acTL") == 1 and kinds.count(b"fcTL") == 4 and kinds.count(b"fdAT") == 3
    assert decode_png(data)[2] == pic.frames[0]  # the default image is frame 0


def test_solid_invert_and_errors() -> None:
    red = images.solid(2, 2, 1, 0xFF0000)
    assert red.frames[0][:3] == b"\xff\x00\x00"
    assert images.invert(images.solid(1, 1, 1, 0x0A141E)).frames[0] == bytes((245, 235, 225))
    with pytest.raises(images.OutOfMemory):
        images.solid(16384, 16384, 1, 0)
    with pytest.raises(PngError):
        decode_png(b"not a png")
    with pytest.raises(PngError):
        encode_png(2, 2, b"\x00")
