"""Small image files that cost a decoder far more than their size suggests."""

from __future__ import annotations

import io
import struct
import zlib

import numpy as np
from PIL import Image


def tiff_with_strips(strips: int, side: int = 64) -> bytes:
    """A side x side 8-bit grey TIFF whose StripOffsets list `strips` strips of one row each,
    all pointing at the same row: far more strips than the image has rows."""
    row = bytes(range(side))
    entries = 9
    ifd_at = 8
    offsets_at = ifd_at + 2 + entries * 12 + 4
    counts_at = offsets_at + 4 * strips
    row_at = counts_at + 4 * strips

    def entry(tag: int, kind: int, count: int, value: int) -> bytes:
        return struct.pack("<HHII", tag, kind, count, value)

    short, long = 3, 4
    ifd = b"".join(
        [
            struct.pack("<H", entries),
            entry(256, short, 1, side),  # ImageWidth
            entry(257, short, 1, side),  # ImageLength
            entry(258, short, 1, 8),  # BitsPerSample
            entry(259, short, 1, 1),  # Compression: none
            entry(262, short, 1, 1),  # Photometric: black is zero
            entry(273, long, strips, offsets_at),  # StripOffsets
            entry(277, short, 1, 1),  # SamplesPerPixel
            entry(278, short, 1, 1),  # RowsPerStrip
            entry(279, long, strips, counts_at),  # StripByteCounts
            struct.pack("<I", 0),
        ]
    )
    return b"".join(
        [
            b"II*\0" + struct.pack("<I", ifd_at),
            ifd,
            struct.pack(f"<{strips}I", *([row_at] * strips)),
            struct.pack(f"<{strips}I", *([side] * strips)),
            row,
        ]
    )


def png_with_text_chunks(chunks: int, text_bytes: int = 1_000_000) -> bytes:
    """A 28x28 PNG with `chunks` zTXt chunks before its pixels, each inflating to `text_bytes`."""
    out = io.BytesIO()
    Image.fromarray(np.full((28, 28), 128, np.uint8)).save(out, "PNG")
    data = out.getvalue()
    idat = data.index(b"IDAT") - 4
    compressed = zlib.compress(b"a" * text_bytes, 9)
    text = b"".join(_chunk(b"zTXt", b"k%d\0\0" % i + compressed) for i in range(chunks))
    return data[:idat] + text + data[idat:]


def _chunk(kind: bytes, body: bytes) -> bytes:
    return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))
