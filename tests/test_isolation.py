"""Decoding in a helper process: a crash or a hang on one file costs that file's row, nothing else."""

from __future__ import annotations

import faulthandler
import os
import signal
import time
from functools import partial
from pathlib import Path

import numpy as np
import pytest
from conftest import HOSTILE_STATUS

from silse_spark.decode import STATUS_DECODE_ERROR, STATUS_OK, DecodedAvatar, decode_avatar
from silse_spark.isolation import IsolatedDecoder, worker_decoder

HOSTILE = Path(__file__).resolve().parent / "data" / "hostile"
FRAMING = "moments-margin-white"


def _misbehaving(data: bytes | None) -> DecodedAvatar:
    """``decode_avatar``, except that the bytes ``crash`` kill the process, ``hang`` never return, ``raise`` raises."""
    if data == b"crash":
        faulthandler.disable()  # pytest's stack dump of a crash made on purpose is only noise
        os.kill(os.getpid(), signal.SIGSEGV)
    if data == b"hang":
        time.sleep(600)
    if data == b"raise":
        raise ValueError("unknown framing 'x'")
    return decode_avatar(data, framing=FRAMING)


def test_results_are_the_in_process_decoder_s() -> None:
    contents = [(HOSTILE / name).read_bytes() for name in sorted(HOSTILE_STATUS)]
    with IsolatedDecoder(partial(decode_avatar, framing=FRAMING), timeout_s=60) as decoder:
        isolated = decoder.decode_many(contents)
    direct = [decode_avatar(c, framing=FRAMING) for c in contents]
    assert [r.status for r in isolated] == [HOSTILE_STATUS[name] for name in sorted(HOSTILE_STATUS)]
    for a, b in zip(isolated, direct, strict=True):
        assert (a.status, a.error, a.width, a.height, a.format) == (b.status, b.error, b.width, b.height, b.format)
        assert (a.pixels is None and b.pixels is None) or np.array_equal(a.pixels, b.pixels)  # type: ignore[arg-type]


def test_a_crash_or_a_hang_costs_one_row_and_the_rest_is_decoded() -> None:
    good = (HOSTILE / "rgb.png").read_bytes()
    with IsolatedDecoder(_misbehaving, timeout_s=3) as decoder:
        started = time.monotonic()
        results = decoder.decode_many([good, b"crash", good, b"hang", good, b"crash"])
        took = time.monotonic() - started
        assert [r.status for r in results] == [STATUS_OK, STATUS_DECODE_ERROR, STATUS_OK, STATUS_DECODE_ERROR,
                                               STATUS_OK, STATUS_DECODE_ERROR]
        assert "crashed on this file (signal SIGSEGV)" in (results[1].error or "")
        assert "longer than 3 s" in (results[3].error or "")
        assert results[5].error == results[1].error
        assert decoder.restarts == 3  # after each crash and the time-out
        assert 3 <= took < 30
        expected = decode_avatar(good, framing=FRAMING).pixels
        assert all(np.array_equal(r.pixels, expected) for r in results[::2])  # type: ignore[arg-type]
        # The decoder goes on working for the next batch, in the same child.
        assert [r.status for r in decoder.decode_many([good, good])] == [STATUS_OK, STATUS_OK]
        assert decoder.restarts == 3


def test_a_programming_error_is_raised_not_turned_into_rows() -> None:
    good = (HOSTILE / "rgb.png").read_bytes()
    with IsolatedDecoder(_misbehaving, timeout_s=30) as decoder:
        with pytest.raises(RuntimeError, match="raised in its helper process: ValueError: unknown framing 'x'"):
            decoder.decode_many([good, b"raise", good])
        assert decoder.decode_many([good])[0].status == STATUS_OK  # a new child after the error


def test_the_child_ends_with_its_decoder() -> None:
    decoder = IsolatedDecoder(_misbehaving, timeout_s=30)
    decoder.decode_many([b""])
    child = decoder._process
    assert child.is_alive()
    decoder.close()
    assert not child.is_alive() and child.exitcode == 0


def test_one_decoder_per_settings_per_process() -> None:
    first = worker_decoder(("test", 1), _misbehaving, 30)
    assert worker_decoder(("test", 1), _misbehaving, 30) is first
    assert worker_decoder(("test", 2), _misbehaving, 30) is not first
    with pytest.raises(ValueError, match="timeout_s must be positive"):
        IsolatedDecoder(_misbehaving, timeout_s=0)
