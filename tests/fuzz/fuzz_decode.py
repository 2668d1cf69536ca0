"""atheris fuzz target for the decoder: any bytes in, a status or a 108x108x3 image out.

    python tests/fuzz/fuzz_decode.py tests/data/hostile -max_total_time=600 -rss_limit_mb=2048

The properties, with and without content framing: decode_avatar never raises; an ``ok`` result is a uint8
108x108x3 array; anything else has a known status and an error message.
libFuzzer's -rss_limit_mb enforces the memory bound.
"""

from __future__ import annotations

import sys

import atheris

with atheris.instrument_imports(include=["silse_spark", "PIL"]):
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
