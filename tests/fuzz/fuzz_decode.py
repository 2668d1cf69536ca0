"""atheris fuzz target for the decoder: any bytes in, a status or a 108x108x3 image out.

    python tests/fuzz/fuzz_decode.py tests/data/hostile -max_total_time=600 -rss_limit_mb=2048

The properties, with and without content framing: decode_avatar never raises; an ``ok`` result is a uint8
108x108x3 array; anything else has a known status and an error message.
libFuzzer's -rss_limit_mb bounds the process; tests/test_fuzz.py also checks the decoder's memory without the fuzzer.
"""

from __future__ import annotations

import sys

import atheris

# Coverage guidance comes from Pillow, where the hostile bytes are parsed. silse_spark is not
# instrumented: atheris' tracing of the framing code's numpy comparisons grew the process by about
# 55 KB per input (2 GB after 45 s, 2026-12-01), while uninstrumented it stays near 120 MB. Every
# input still runs through decode_avatar with every framing and is checked below.
with atheris.instrument_imports(include=["PIL"]):
    from silse_spark.decode import STATUS_OK, STATUSES, decode_avatar
    from silse_spark.framing import FRAMINGS


def test_one_input(data: bytes) -> None:
    statuses = set()
    for framing in FRAMINGS:  # the plain decoder and the content framings some models use
        result = decode_avatar(data, max_pixels=4_000_000, framing=framing)
        statuses.add(result.status)
        if result.status == STATUS_OK:
            if result.pixels is None or result.pixels.shape != (108, 108, 3) or result.pixels.dtype.name != "uint8":
                raise RuntimeError(f"ok result with bad pixels: {None if result.pixels is None else result.pixels.shape}")
        elif result.status not in STATUSES or not result.error or result.pixels is not None:
            raise RuntimeError(f"bad failure result: {result.status!r} {result.error!r}")
    if len(statuses) != 1:
        raise RuntimeError(f"framing changed the status: {statuses}")


def main() -> None:
    atheris.Setup(sys.argv, test_one_input)
    atheris.Fuzz()


if __name__ == "__main__":
    main()
