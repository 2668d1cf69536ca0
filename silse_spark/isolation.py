"""Decode untrusted images in a helper process: a codec that crashes or hangs costs one row, not the night's job.

:func:`silse_spark.decode.decode_avatar` turns every Python-level failure into a
status, but Pillow's codecs (libjpeg-turbo, libpng, zlib, libwebp, giflib) run
in C inside the process: a memory-safety bug that one crafted upload reaches
would kill the Python worker, Spark would retry the task on the same file
(``spark.task.maxFailures``, 4 on a cluster, 1 under ``local[N]``) and the job
would fail with it; an input that makes a codec loop would stall the task
forever. So a retried task (Spark's attempt 1 and later, which the hash job's
UDF detects) decodes through an :class:`IsolatedDecoder`: a child forked from
the Python worker receives a batch of file contents and answers with their
results, in order, while a counter in shared memory says which image it is on.
When the child dies, that image gets ``decode_error`` naming the signal and a
new child decodes the others again; when one image takes longer than the time
limit, the child is killed and the image gets ``decode_error`` saying so. The
first attempt decodes in the worker itself: decoding in the helper costs 5-8%
more time per image, and a crash is rare.

Results are the same objects :func:`decode_avatar` returns in-process (same
pixels: the child runs the same function). A Python exception escaping the
decode function (a programming error such as an unknown framing, never bad
input) is raised again in the parent, as it would be in-process.

Example
-------
>>> from functools import partial
>>> from PIL import Image
>>> from silse_spark.decode import decode_avatar
>>> from silse_spark.variations import encode
>>> with IsolatedDecoder(partial(decode_avatar, framing="none"), timeout_s=60) as decoder:
...     results = decoder.decode_many([encode(Image.new("RGB", (40, 30), "teal")), b"not an image"])
>>> [r.status for r in results], results[0].pixels.shape
(['ok', 'decode_error'], (108, 108, 3))
"""

from __future__ import annotations

import faulthandler
import logging
import multiprocessing
import os
import signal
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from silse_spark.decode import STATUS_DECODE_ERROR, DecodedAvatar

log = logging.getLogger(__name__)

DEFAULT_DECODE_TIMEOUT_S = 60.0
"""Longest one image may take to decode in the helper process before it is killed. The slowest accepted files
take about 1 s on the development machine (a JPEG at the scan limit; docs/reliability.md), and a worker's first
framed image also compiles the framing's kernels (4-6 s when the on-disk cache is cold): 60 s leaves room for a
loaded executor while a hung codec costs a task at most a minute."""

Decode = Callable[[Any], DecodedAvatar]

CRASHED = "the image decoder crashed on this file"
"""How the ``error`` of a file the decoder crashed on begins (the hash job counts them in its summary)."""
TIMED_OUT = "decoding took longer than"
"""How the ``error`` of a file whose decoding was stopped at the time limit begins."""

CRASH_MARKER_ENV = "SILSE_TEST_DECODER_CRASH_MARKER"
"""Test-only switch: when set, the process decoding a file whose bytes start with this value kills itself with
SIGSEGV, standing in for a codec's memory-safety bug, so that the Spark tests can crash a real Python worker (a
task's first attempt) and a real helper (its retry)."""


@dataclass(frozen=True)
class _Raised:
    """What the child sends instead of a result when the decode function raised (a programming error)."""

    text: str


def _crash_if_marked(marker: bytes, data: Any) -> None:
    """Kill this process with SIGSEGV when ``data`` starts with ``marker`` (:data:`CRASH_MARKER_ENV`; tests only)."""
    if marker and data is not None and bytes(data[: len(marker)]) == marker:
        faulthandler.disable()  # a made-up crash: no stack dump in the executor's log
        os.kill(os.getpid(), signal.SIGSEGV)


def in_process_decoder(decode: Decode) -> Callable[[list[Any]], list[DecodedAvatar]]:
    """``decode`` over a batch in this process: what a task's first attempt uses (:data:`CRASH_MARKER_ENV` honoured)."""
    marker = os.environ.get(CRASH_MARKER_ENV, "").encode()
    if not marker:
        return lambda batch: [decode(data) for data in batch]

    def decode_many(batch: list[Any]) -> list[DecodedAvatar]:
        for data in batch:
            _crash_if_marked(marker, data)
        return [decode(data) for data in batch]

    return decode_many


def _serve(conn: Any, parent_end: Any, decode: Decode, progress: Any) -> None:
    """The child: decode each batch received on ``conn`` and send its results back in one message, until the parent
    is gone. ``progress`` (shared memory) holds the index of the image being decoded, so that the parent knows which
    one it was if this process dies or stalls."""
    parent_end.close()
    marker = os.environ.get(CRASH_MARKER_ENV, "").encode()
    while True:
        try:
            batch = conn.recv()
        except (EOFError, OSError):  # the parent closed its end or exited
            return
        results: list[DecodedAvatar | _Raised] = []
        for index, data in enumerate(batch):
            progress.value = index
            _crash_if_marked(marker, data)
            try:
                results.append(decode(data))
            except Exception as exc:  # noqa: BLE001 - sent back and raised in the parent
                results.append(_Raised(f"{type(exc).__name__}: {exc}"))
                break
        progress.value = len(batch)
        conn.send(results)


def _signal_name(exitcode: int | None) -> str:
    """How the child ended: ``signal SIGSEGV`` for a negative exit code, ``exit code N`` otherwise."""
    if exitcode is not None and exitcode < 0:
        try:
            return f"signal {signal.Signals(-exitcode).name}"
        except ValueError:
            return f"signal {-exitcode}"
    return f"exit code {exitcode}"


class IsolatedDecoder:
    """Runs ``decode`` on untrusted bytes in a forked child process, restarted after a crash or a time-out.

    Parameters
    ----------
    decode
        One file's bytes (or ``None``) -> :class:`~silse_spark.decode.DecodedAvatar`; run in the child.
    timeout_s
        Longest one image may take; the child is then killed and the image gets ``decode_error``.
    """

    def __init__(self, decode: Decode, timeout_s: float = DEFAULT_DECODE_TIMEOUT_S) -> None:
        if timeout_s <= 0:
            raise ValueError(f"timeout_s must be positive, got {timeout_s}")
        self._decode = decode
        self.timeout_s = timeout_s
        self._process: Any = None
        self._conn: Any = None
        self._progress: Any = None
        self.restarts = 0
        """Children started after the first (each after a crash or a time-out)."""
        self.owner_pid = os.getpid()
        """The process that made this decoder: its child belongs to that process alone."""

    def __enter__(self) -> IsolatedDecoder:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _start(self) -> None:
        if self._process is not None:
            self.restarts += 1
        # fork: the child has the decode function and its modules already, and Pillow's codecs are all it runs.
        context = multiprocessing.get_context("fork")
        parent_end, child_end = context.Pipe()
        self._progress = context.RawValue("q", -1)
        process = context.Process(target=_serve, args=(child_end, parent_end, self._decode, self._progress),
                                  daemon=True, name="silse-decode")
        process.start()
        child_end.close()
        self._process, self._conn = process, parent_end
        log.info("image decoder helper process %s started (restart %d) by %s", process.pid, self.restarts, os.getpid())

    def _stop(self, kill: bool) -> int | None:
        """End the child (killed if ``kill``, else told to finish by closing the pipe); its exit code."""
        process, conn = self._process, self._conn
        self._conn = None
        if conn is not None:
            conn.close()
        if process is None:
            return None
        if kill and process.is_alive():
            process.kill()
        process.join(timeout=10)
        if process.is_alive():  # did not finish on its own: stop waiting for it
            process.kill()
            process.join(timeout=10)
        return process.exitcode

    def close(self) -> None:
        """Stop the child process (the decoder starts a new one if used again)."""
        self._stop(kill=False)
        self._process = None

    def decode_many(self, contents: Sequence[Any]) -> list[DecodedAvatar]:
        """One result per item of ``contents``, in order; a crash or time-out costs only the image it happened on.

        The batch goes to the child in one message and comes back in one (a message per image made the worker
        and its helper take turns 256 times a batch: 18-25% more time per image with two workers on two cores,
        against 8% this way). After a crash or a time-out the images not yet returned are sent to a new child.

        Raises
        ------
        RuntimeError
            If the decode function raised (a programming error, not bad input).
        """
        results: dict[int, DecodedAvatar] = {}
        todo = list(range(len(contents)))
        while todo:
            if self._conn is None:
                self._start()
            self._conn.send([contents[i] for i in todo])
            received, position, failure = self._wait(len(todo))
            if received is not None:
                for i, result in zip(todo, received, strict=False):
                    if isinstance(result, _Raised):
                        self._stop(kill=True)
                        raise RuntimeError(f"the image decoder raised in its helper process: {result.text}")
                    results[i] = result
                break
            results[todo[position]] = failure  # type: ignore[assignment]
            todo = todo[:position] + todo[position + 1 :]
        return [results[i] for i in range(len(contents))]

    def _wait(self, count: int) -> tuple[list[Any] | None, int, DecodedAvatar | None]:
        """``(results, -1, None)`` once the child answers; ``(None, position, failure row)`` if it dies or one image
        takes longer than the time limit (``position``: that image's place in the batch sent)."""
        step = min(1.0, self.timeout_s / 4)
        seen, since = -2, time.monotonic()
        while True:
            try:
                if self._conn.poll(step):
                    return self._conn.recv(), -1, None
            except (EOFError, OSError):  # the child died while decoding an image
                position = min(max(int(self._progress.value), 0), count - 1)
                code = self._stop(kill=True)
                return None, position, DecodedAvatar(
                    STATUS_DECODE_ERROR,
                    f"{CRASHED} ({_signal_name(code)}); it was decoding in a helper "
                    "process, so only this file's row is affected: keep the file for analysis",
                )
            now, current = time.monotonic(), int(self._progress.value)
            if current != seen:
                seen, since = current, now
            elif now - since > self.timeout_s and 0 <= current < count:
                self._stop(kill=True)
                return None, current, DecodedAvatar(
                    STATUS_DECODE_ERROR,
                    f"{TIMED_OUT} {self.timeout_s:g} s and was stopped (the hash job's "
                    "--decode-timeout)",
                )


_WORKER_DECODERS: dict[tuple[Any, ...], IsolatedDecoder] = {}


def worker_decoder(key: tuple[Any, ...], decode: Decode, timeout_s: float) -> IsolatedDecoder:
    """One :class:`IsolatedDecoder` per ``key`` (the decode settings) per Python worker, reused across its tasks.

    A new process (a fork of a Spark Python worker) does not inherit the parent's decoders' children.
    """
    found = _WORKER_DECODERS.get(key)
    if found is None or found.owner_pid != os.getpid():
        found = _WORKER_DECODERS[key] = IsolatedDecoder(decode, timeout_s)
    return found
