"""Time container-structure bombs at the 64 MiB file limit: Pillow alone, then silse's decoder.

Each file is a small valid image padded, up to ``--mib`` MiB, with the structure that Pillow's parser
reads one element at a time in Python (see silse_spark.containers). Prints a Markdown table for
docs/reliability.md.

    .venv/bin/python scripts/container_bombs.py [--mib 64]
"""

from __future__ import annotations

import argparse
import io
import time
import zlib
from collections.abc import Callable
from functools import partial

from PIL import Image

from silse_spark.decode import decode_avatar


def _image(fmt: str) -> bytes:
    buf = io.BytesIO()
    Image.effect_noise((64, 64), 40).convert("RGB").save(buf, format=fmt)
    return buf.getvalue()


def _repeat(unit: bytes, size: int) -> bytes:
    return unit * max(1, size // len(unit))


def _png_chunk(kind: bytes, data: bytes) -> bytes:
    return len(data).to_bytes(4, "big") + kind + data + zlib.crc32(kind + data).to_bytes(4, "big")


def _gif_start(data: bytes) -> int:
    flags = data[10]
    return 13 + ((3 << ((flags & 7) + 1)) if flags & 0x80 else 0)


def bombs(size: int) -> dict[str, bytes]:
    """Name -> bytes of about ``size`` bytes."""
    jpeg, png, gif, webp = (_image(fmt) for fmt in ("JPEG", "PNG", "GIF", "WEBP"))
    start = _gif_start(gif)
    webp_body = webp[12:] + _repeat(b"ABCD" + bytes(4), size)  # unknown RIFF chunks, parsed by libwebp (C)
    return {
        "JPEG, 0xFF fill bytes before the first marker": jpeg[:2] + _repeat(b"\xff", size) + jpeg[2:],
        "JPEG, empty comment segments": jpeg[:2] + _repeat(b"\xff\xfe\x00\x02", size) + jpeg[2:],
        "PNG, empty ancillary chunks": png[:33] + _repeat(_png_chunk(b"abCd", b""), size) + png[33:],
        "GIF, stray bytes before the first image": gif[:start] + _repeat(b"\x05", size) + gif[start:],
        "GIF, a comment of one-byte sub-blocks": gif[:start] + b"\x21\xfe" + _repeat(b"\x01A", size) + b"\x00"
        + gif[start:],
        "WebP, unknown RIFF chunks": b"RIFF" + (len(webp_body) + 4).to_bytes(4, "little") + b"WEBP" + webp_body,
    }


def _pillow(data: bytes) -> None:
    with Image.open(io.BytesIO(data)) as img:
        img.load()


def _timed(call: Callable[[bytes], object], data: bytes) -> tuple[float, object]:
    started = time.perf_counter()
    value = call(data)
    return time.perf_counter() - started, value


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--mib", type=float, default=64.0, help="size of each file in MiB (default 64)")
    args = parser.parse_args()
    decode_avatar(_image("PNG"), framing="moments-margin-white")  # warm up imports and the framing
    print("| file | MiB | Pillow `open` + `load` (s) | `decode_avatar` (s) | status |")
    print("|---|---:|---:|---:|---|")
    for name, data in bombs(int(args.mib * 2**20)).items():
        pillow, _ = _timed(_pillow, data)
        ours, result = _timed(partial(decode_avatar, framing="moments-margin-white"), data)
        print(f"| {name} | {len(data) / 2**20:.1f} | {pillow:.2f} | {ours:.3f} | `{result.status}` |", flush=True)


if __name__ == "__main__":
    main()
