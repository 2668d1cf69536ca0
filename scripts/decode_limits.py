"""Time and memory of one decode at the decoder's limits: small files that decode to the largest images allowed.

Each file is decoded by ``silse_spark.decode.decode_avatar`` (the default model's framing) in a fresh process,
after one small decode (imports and the framing's compiled kernels are not counted). Prints a Markdown table for
docs/reliability.md: the file's size, the decode's wall time and its peak resident memory above the process's
resident memory just before it.

    .venv/bin/python scripts/decode_limits.py [--decoder silse_spark.decode]
"""

from __future__ import annotations

import argparse
import io
import os
import resource
import subprocess  # nosec B404 - runs this script again, fixed arguments
import sys
import tempfile
import threading
import time
from collections.abc import Callable

import numpy as np
import psutil
from PIL import Image

SIDE = 4096


def _encode(img: Image.Image, fmt: str, **kwargs: object) -> bytes:
    buf = io.BytesIO()
    img.save(buf, format=fmt, **kwargs)
    return buf.getvalue()


def _two_blobs() -> Image.Image:
    pixels = np.full((SIDE, SIDE, 3), 255, np.uint8)
    pixels[:300, :300] = 0
    pixels[-300:, -300:] = 0
    return Image.fromarray(pixels)


CASES: dict[str, Callable[[], bytes]] = {
    "RGB PNG 4096x4096, white": lambda: _encode(Image.new("RGB", (SIDE, SIDE), "white"), "PNG"),
    "RGB PNG 4096x4096, two dark corners": lambda: _encode(_two_blobs(), "PNG"),
    "RGBA PNG 4096x4096, transparent": lambda: _encode(Image.new("RGBA", (SIDE, SIDE), (0, 0, 0, 0)), "PNG"),
    "palette PNG 4096x4096, transparent": lambda: _encode(Image.new("P", (SIDE, SIDE), 0), "PNG", transparency=0),
    "grey + alpha PNG 4096x4096": lambda: _encode(Image.new("LA", (SIDE, SIDE), (0, 0)), "PNG"),
    "16-bit grey PNG 4096x4096": lambda: _encode(Image.new("I;16", (SIDE, SIDE), 1000), "PNG"),
    "GIF 4096x4096": lambda: _encode(Image.new("P", (SIDE, SIDE), 0), "GIF"),
    "WebP 4096x4096, transparent": lambda: _encode(Image.new("RGBA", (SIDE, SIDE), (0, 0, 0, 0)), "WEBP"),
    "JPEG 4096x4096, white": lambda: _encode(Image.new("RGB", (SIDE, SIDE), "white"), "JPEG"),
    "RGB PNG 1024x16384": lambda: _encode(Image.new("RGB", (1024, 16384), "white"), "PNG"),
    "grey PNG 1x16777216": lambda: _encode(Image.new("L", (1, SIDE * SIDE), 3), "PNG"),
    "grey PNG 16777216x1": lambda: _encode(Image.new("L", (SIDE * SIDE, 1), 3), "PNG"),
    "RGBA PNG 1x16777216, transparent": lambda: _encode(Image.new("RGBA", (1, SIDE * SIDE), (0, 0, 0, 0)), "PNG"),
}


def _maxrss() -> int:
    """This process's peak resident memory in bytes (Linux reports KiB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


def measure(name: str, path: str, decoder: str) -> str:
    """One table row for ``CASES[name]``, written to ``path`` by the parent (making it here would raise this
    process's peak memory before the decode), decoded in this process."""
    import importlib

    from silse_spark.model import get_model_spec

    decode_avatar = importlib.import_module(decoder).decode_avatar
    with open(path, "rb") as fh:
        data = fh.read()
    framing = get_model_spec(None).framing
    decode_avatar(_encode(Image.new("RGBA", (64, 64), (9, 9, 9, 100)), "PNG"), framing=framing)  # warm-up
    # The peak above the resident memory just before: the process's own peak (ru_maxrss) where the decode raised
    # it, else the highest of samples taken every millisecond (the warm-up's compilation may have peaked higher).
    process = psutil.Process()
    rss_before, maxrss_before = process.memory_info().rss, _maxrss()
    sampled, done = [rss_before], threading.Event()

    def sample() -> None:
        while not done.wait(0.001):
            sampled.append(process.memory_info().rss)

    sampler = threading.Thread(target=sample)
    sampler.start()
    start = time.perf_counter()
    result = decode_avatar(data, framing=framing)
    seconds = time.perf_counter() - start
    done.set()
    sampler.join()
    peak = _maxrss() if _maxrss() > maxrss_before else max(sampled)
    grown = (peak - rss_before) / 2**20
    return f"| {name} | {len(data) / 1024:.1f} | {seconds * 1000:.0f} | {grown:.0f} | `{result.status}` |"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--decoder", default="silse_spark.decode", help="module with decode_avatar (to compare)")
    parser.add_argument("--case", nargs=2, help=argparse.SUPPRESS)  # the child process: one case, its file
    args = parser.parse_args()
    if args.case:
        print(measure(*args.case, args.decoder))
        return
    print("| file | KB | decode (ms) | peak memory grew (MiB) | status |")
    print("|---|---:|---:|---:|---|")
    with tempfile.TemporaryDirectory() as tmp:
        for k, (name, make) in enumerate(CASES.items()):
            path = os.path.join(tmp, str(k))
            with open(path, "wb") as fh:
                fh.write(make())
            done = subprocess.run([sys.executable, __file__, "--decoder", args.decoder, "--case", name, path],  # nosec B603
                                  capture_output=True, text=True, check=True)
            print(done.stdout.strip())


if __name__ == "__main__":
    main()
