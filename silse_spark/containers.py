"""Limits on an image file's container structure, checked on its bytes before Pillow parses it.

Pillow reads a JPEG's markers up to the first scan, a PNG's chunks and a GIF's blocks before its first
image one at a time in Python, and the formats allow any number of them: a file made of many tiny ones
costs seconds of CPU per MiB without ever reaching the pixel limit. Measured on this project's 2-core
machine with Pillow 13 (``scripts/container_bombs.py``; docs/reliability.md), a 64x64 image padded to the
64 MiB file limit took, to open and load: 53 s with 0xFF fill bytes before a JPEG's first marker, 19 s with
empty JPEG comment segments, 15 s with empty PNG chunks, 10 s with a GIF comment of one-byte sub-blocks.

Each walk below takes the same steps as Pillow's parser, by the same rules, and stops as soon as its count
passes the limit, so a hostile file costs this check at most the limit's steps (milliseconds) and Pillow
nothing. Real images have a few dozen markers, chunks or blocks; the limits are far above what an encoder
writes (100,000 PNG chunks in the 64 MiB file limit average 670 bytes; libpng writes 8 KiB ones).
They are counts, not a timer, so a file's status never depends on how busy or fast an executor is.

>>> structure_error(b"\\xff\\xd8\\xff" + b"\\xff" * 70_000 + b"\\xd9")  # doctest: +ELLIPSIS
'JPEG has more than 65536 markers, fill or junk bytes before its first scan; an encoder writes a few dozen. Refused...'
>>> structure_error(b"GIF89a" + bytes(7) + b";") is None
True
"""

from __future__ import annotations

import re
from collections.abc import Iterable

MAX_JPEG_HEADER_STEPS = 65_536
"""Most markers, 0xFF fill bytes and junk bytes a JPEG may have before its first start-of-scan marker."""

MAX_PNG_CHUNKS = 100_000
"""Most chunks a PNG may have (``IEND`` included)."""

MAX_GIF_BLOCKS = 100_000
"""Most extension blocks, data sub-blocks and stray bytes a GIF may have before its first image."""

JPEG_SIGNATURE = b"\xff\xd8\xff"
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
GIF_SIGNATURES = (b"GIF87a", b"GIF89a")

_FILL = re.compile(rb"\xff+")
_STANDALONE_MARKERS = frozenset({0x00, 0x01, *range(0xD0, 0xDA)})  # no length field follows
_SOS = 0xDA


def jpeg_header_steps(data: bytes, limit: int = MAX_JPEG_HEADER_STEPS) -> int:
    """Steps of Pillow's JPEG header loop before the first scan, counted up to ``limit + 1``.

    One step per marker, per 0xFF fill byte and per junk byte between segments; a segment's body is
    jumped over by its length, as Pillow does.
    """
    pos, steps, end = 2, 0, len(data)
    while pos < end and steps <= limit:
        if data[pos] != 0xFF:  # junk: Pillow reads it a byte at a time
            following = data.find(b"\xff", pos)
            steps += (end if following < 0 else following) - pos
            if following < 0:
                break
            pos = following
            continue
        fill = _FILL.match(data, pos)
        last = fill.end() - 1 if fill else pos  # the 0xFF before the marker byte
        steps += last - pos + 1
        if last + 1 >= end or data[last + 1] == _SOS:
            break
        marker = data[last + 1]
        pos = last + 2 if marker in _STANDALONE_MARKERS else last + 2 + int.from_bytes(data[last + 2:last + 4], "big")
    return steps


def png_chunks(data: bytes, limit: int = MAX_PNG_CHUNKS) -> int:
    """Number of chunks in a PNG up to and including ``IEND``, counted up to ``limit + 1``."""
    pos, count, end = len(PNG_SIGNATURE), 0, len(data)
    while pos + 8 <= end and count <= limit:
        count += 1
        if data[pos + 4:pos + 8] == b"IEND":
            break
        pos += 12 + int.from_bytes(data[pos:pos + 4], "big")
    return count


def gif_blocks_before_image(data: bytes, limit: int = MAX_GIF_BLOCKS) -> int:
    """Extension blocks, their sub-blocks and stray bytes before a GIF's first image, counted up to ``limit + 1``."""
    end = len(data)
    if end < 13:
        return 0
    flags = data[10]
    pos = 13 + ((3 << ((flags & 7) + 1)) if flags & 0x80 else 0)  # after the global colour table
    count = 0
    while pos < end and count <= limit:
        introducer = data[pos]
        if introducer in (0x2C, 0x3B):  # image descriptor or trailer: Pillow stops here
            break
        count += 1
        if introducer != 0x21:  # a stray byte: Pillow skips it and reads the next
            pos += 1
            continue
        pos += 2  # introducer and label
        while pos < end and count <= limit:
            size = data[pos]
            pos += 1 + size
            count += 1
            if size == 0:
                break
    return count


_LIMITS = (
    # format, signatures, counter, limit, what an encoder writes
    ("JPEG", (JPEG_SIGNATURE,), jpeg_header_steps, MAX_JPEG_HEADER_STEPS,
     "markers, fill or junk bytes before its first scan; an encoder writes a few dozen"),
    ("PNG", (PNG_SIGNATURE,), png_chunks, MAX_PNG_CHUNKS,
     "chunks; an encoder writes a few, plus one per 8 KiB or more of pixel data"),
    ("GIF", GIF_SIGNATURES, gif_blocks_before_image, MAX_GIF_BLOCKS,
     "blocks or stray bytes before its first image; an encoder writes a few"),
)


def structure_error(data: bytes, formats: Iterable[str] = ("JPEG", "PNG", "GIF")) -> str | None:
    """Why the container of ``data`` is refused, or ``None``.

    Only the formats in ``formats`` are checked (Pillow's names; the one ``data``'s signature claims),
    as only their parsers will ever see the bytes.
    """
    for fmt, signatures, counter, limit, usual in _LIMITS:
        if fmt in formats and data.startswith(signatures) and counter(data, limit) > limit:
            return (f"{fmt} has more than {limit} {usual}. Refused as a CPU-time bomb: the parser takes them one "
                    "at a time")
    return None
