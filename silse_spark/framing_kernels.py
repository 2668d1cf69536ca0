"""Compiled inner loops of :mod:`silse_spark.framing` (numba): the same integer arithmetic, without per-call overhead.

The framing looks at every avatar's pixels several times: its distance to a
colour, ring after ring from the edge inwards, the connected regions around
the corners. Written with numpy, each step is a handful of small array calls
and the Python overhead between them cost more than the arithmetic (before,
about 390 calls and 0.68 ms per 128x128 avatar, ``make bench``'s images). These
kernels do the same steps in one compiled loop each, on integers (colour
distances are doubled so that they stay integers; medians of integers are
exact in float32), so the framing's results are the same bit for bit:
``tests/test_framing_kernels.py`` compares them with the numpy definitions.

Compiled on first use and cached on disk (``cache=True``): a process's first
framed image took 4.3 s and 6.4 s in two runs with the cache cleared, the
next 200 images 0.3 s more than cached as the rarer kernels compiled, and
0.37-0.44 s with the cache (scratch ``work/fast30/first.py``, 2026-12-02).
The cache lies next to this file, or in ``<tmp>/silse-numba-cache``
where the package is installed read-only (an unpacked archive on an
executor); ``NUMBA_CACHE_DIR`` chooses the place.
"""

from __future__ import annotations

import os
import tempfile

import numpy as np
from numba import config, njit


def _writable(folder: str) -> bool:
    """Whether files can be created in ``folder`` (made if missing), as numba's cache needs."""
    try:
        os.makedirs(folder, exist_ok=True)
        with tempfile.TemporaryFile(dir=folder):
            return True
    except OSError:
        return False


if not config.CACHE_DIR and not _writable(  # type: ignore[attr-defined]  # numba sets its config at run time
        os.path.join(os.path.dirname(os.path.abspath(__file__)), "__pycache__")):
    # Numba's next choice is a per-user directory; on an executor whose home is read-only too it would refuse
    # to compile at all (a RuntimeError at import). The temporary directory is writable wherever Python runs.
    config.CACHE_DIR = os.path.join(  # type: ignore[attr-defined]
        tempfile.gettempdir(), "silse-numba-cache")


@njit(cache=True, nogil=True)
def twice_distance(pixels: np.ndarray, twice: np.ndarray) -> np.ndarray:  # pragma: no cover - compiled
    """Twice the largest channel difference between each pixel of ``pixels`` (C-contiguous uint8 ``(h, w, 3)``)
    and the colour ``twice / 2`` (``twice``: int64 ``(3,)``), as int16 ``(h, w)``."""
    height, width = pixels.shape[0], pixels.shape[1]
    flat = pixels.reshape(height * width * 3)
    t0, t1, t2 = np.int32(twice[0]), np.int32(twice[1]), np.int32(twice[2])
    out = np.empty(height * width, np.int16)
    for i in range(height * width):
        d0 = abs(2 * np.int32(flat[3 * i]) - t0)
        d1 = abs(2 * np.int32(flat[3 * i + 1]) - t1)
        d2 = abs(2 * np.int32(flat[3 * i + 2]) - t2)
        out[i] = max(d0, max(d1, d2))
    return out.reshape(height, width)


@njit(cache=True, nogil=True)
def _ring_histogram(pixels: np.ndarray, inset: int, hist: np.ndarray) -> int:  # pragma: no cover - compiled
    """Count ring ``inset``'s pixels per channel and level into ``hist`` (int64 ``(3, 256)``, zeroed here), as
    ``framing._ring`` lists them: top row, bottom row, left column, right column (corners twice). Returns how
    many pixels that is."""
    hist[:] = 0
    top, bottom = inset, pixels.shape[0] - 1 - inset
    left, right = inset, pixels.shape[1] - 1 - inset
    for x in range(left, right + 1):
        for c in range(3):
            hist[c, pixels[top, x, c]] += 1
            hist[c, pixels[bottom, x, c]] += 1
    for y in range(top, bottom + 1):
        for c in range(3):
            hist[c, pixels[y, left, c]] += 1
            hist[c, pixels[y, right, c]] += 1
    return 2 * (right - left + 1) + 2 * (bottom - top + 1)


@njit(cache=True, nogil=True)
def _level_at(counts: np.ndarray, rank: int) -> int:  # pragma: no cover - compiled
    """The level holding the ``rank``-th smallest value (0-based) of a histogram."""
    seen = 0
    for level in range(256):
        seen += counts[level]
        if seen > rank:
            return level
    return 255


@njit(cache=True, nogil=True)
def _median_of(hist: np.ndarray, n: int, out: np.ndarray) -> None:  # pragma: no cover - compiled
    """Per-channel median of ``n`` values counted in ``hist``, as float32 into ``out`` (``framing._median``: the
    mean of the middle two for an even count, exact for integers)."""
    half = n // 2
    for c in range(3):
        if n % 2:
            out[c] = np.float32(_level_at(hist[c], half))
        else:
            out[c] = (np.float32(_level_at(hist[c], half - 1)) + np.float32(_level_at(hist[c], half))) / np.float32(2)


@njit(cache=True, nogil=True)
def ring_median(pixels: np.ndarray, inset: int) -> np.ndarray:  # pragma: no cover - compiled
    """Per-channel median (float32 ``(3,)``) of ring ``inset`` of uint8 ``pixels`` ``(h, w, 3)``."""
    hist = np.empty((3, 256), np.int64)
    median = np.empty(3, np.float32)
    _median_of(hist, _ring_histogram(pixels, inset, hist), median)
    return median


@njit(cache=True, nogil=True)
def median(values: np.ndarray) -> np.ndarray:  # pragma: no cover - compiled
    """Per-channel median (float32 ``(3,)``) of uint8 ``values`` ``(n, 3)``, ``n >= 1``."""
    if values.shape[0] == 0:
        raise ValueError("the median of no pixels")
    hist = np.zeros((3, 256), np.int64)
    for i in range(values.shape[0]):
        for c in range(3):
            hist[c, values[i, c]] += 1
    out = np.empty(3, np.float32)
    _median_of(hist, values.shape[0], out)
    return out


@njit(cache=True, nogil=True)
def _near(pixels: np.ndarray, y: int, x: int, median: np.ndarray, low: float) -> int:  # pragma: no cover
    """1 if pixel ``(y, x)`` lies within ``low`` of ``median`` in every channel, else 0 (float32, as numpy)."""
    for c in range(3):
        if abs(np.float32(pixels[y, x, c]) - median[c]) > low:
            return 0
    return 1


@njit(cache=True, nogil=True)
def peel_rings(pixels: np.ndarray, start: int, limit: int, low: float, uniform_share: float
               ) -> tuple[int, np.ndarray]:  # pragma: no cover - compiled
    """Rings ``start``, ``start + 1``, ... up to ``limit`` tested for uniformity until one is not.

    Returns ``(stop, medians)``: ``stop`` is the first ring that is not uniform (``limit`` when all are) and
    ``medians[k]`` (float32 ``(limit + 1, 3)``) ring ``k``'s median for ``start <= k <= min(stop, limit - 1)``.
    A ring is uniform when at least ``uniform_share`` of its pixels (as ``framing._ring`` lists them) lie within
    ``low`` of its median in every channel.
    """
    medians = np.zeros((limit + 1, 3), np.float32)
    hist = np.empty((3, 256), np.int64)
    for k in range(start, limit):
        n = _ring_histogram(pixels, k, hist)
        median = medians[k]
        _median_of(hist, n, median)
        top, bottom = k, pixels.shape[0] - 1 - k
        left, right = k, pixels.shape[1] - 1 - k
        near = 0
        for x in range(left, right + 1):
            near += _near(pixels, top, x, median, low) + _near(pixels, bottom, x, median, low)
        for y in range(top, bottom + 1):
            near += _near(pixels, y, left, median, low) + _near(pixels, y, right, median, low)
        if near / n < uniform_share:
            return k, medians
    return limit, medians


@njit(cache=True, nogil=True)
def _fill(passable: np.ndarray, labels: np.ndarray, y0: int, x0: int, label: int,
          stack: np.ndarray) -> None:  # pragma: no cover - compiled
    """Give ``label`` to the 4-connected area of ``passable`` pixels holding ``(y0, x0)`` (scanline flood fill:
    each row's run is labelled whole, and the start of every unlabelled run above and below it is pushed)."""
    height, width = passable.shape
    stack[0, 0], stack[0, 1] = y0, x0
    top = 1
    while top:
        top -= 1
        y, x = stack[top, 0], stack[top, 1]
        if labels[y, x]:
            continue
        left = x
        while left > 0 and not labels[y, left - 1] and passable[y, left - 1]:
            left -= 1
        right = x
        while right < width - 1 and not labels[y, right + 1] and passable[y, right + 1]:
            right += 1
        labels[y, left : right + 1] = label
        for row in (y - 1, y + 1):
            if 0 <= row < height:
                in_run = False
                for col in range(left, right + 1):
                    open_ = not labels[row, col] and passable[row, col]
                    if open_ and not in_run:
                        stack[top, 0], stack[top, 1] = row, col
                        top += 1
                    in_run = open_


@njit(cache=True, nogil=True)
def seed_region(pixels: np.ndarray, seed_y: int, seed_x: int, seeds: np.ndarray, covered: np.ndarray,
                low: int, flat_twice: int, keep_out: int
                ) -> tuple[np.ndarray, bool, bool, int, int]:  # pragma: no cover - compiled
    """The 4-connected areas within ``low / 2`` of the seed pixel's colour that hold a seed not yet ``covered``.

    ``seeds``: int64 ``(n, 2)`` rows ``(y, x)``, the first four the corners. Returns ``(mask, thin, margin,
    flat, size)``: the union of those areas (bool ``(h, w)``), whether it stays within ``keep_out`` pixels of
    the edges, whether one of the areas holds all four corners, how many of its pixels lie within
    ``flat_twice / 2`` of the seed's colour, and its size. The areas are the connected components
    ``scipy.ndimage.label`` (4-connected) finds on ``to_seed <= low`` that hold such a seed.
    """
    height, width = pixels.shape[0], pixels.shape[1]
    twice = np.empty(3, np.int64)
    for c in range(3):
        twice[c] = 2 * np.int64(pixels[seed_y, seed_x, c])
    to_seed = twice_distance(pixels, twice)
    passable = to_seed <= low
    labels = np.zeros((height, width), np.int8)  # at most one label per seed
    stack = np.empty((2 * height * width + 1, 2), np.int32)  # a pixel is pushed at most from above and below
    label = 0
    for s in range(seeds.shape[0]):
        y0, x0 = seeds[s, 0], seeds[s, 1]
        if covered[y0, x0] or not passable[y0, x0] or labels[y0, x0]:
            continue
        label += 1
        _fill(passable, labels, y0, x0, label, stack)
    corner = labels[seeds[0, 0], seeds[0, 1]]
    margin = corner > 0
    for s in range(1, 4):
        if labels[seeds[s, 0], seeds[s, 1]] != corner:
            margin = False
    mask = labels > 0
    thin = True
    flat = 0
    size = 0
    for y in range(height):
        for x in range(width):
            if mask[y, x]:
                size += 1
                flat += to_seed[y, x] <= flat_twice
                if keep_out <= y < height - keep_out and keep_out <= x < width - keep_out:
                    thin = False
    return mask, thin, margin, flat, size


@njit(cache=True, nogil=True)
def dominant_flat(pixels: np.ndarray, free: np.ndarray, flat_twice: int) -> tuple[int, int]:  # pragma: no cover
    """``(near, total)``: how many of the ``total`` pixels in ``free`` (bool ``(h, w)``) lie within
    ``flat_twice / 2`` of the most common colour among them.

    Colours are counted in 32 levels a channel; the most common one (the lowest on a tie, as ``np.argmax``)
    is measured as the median of every pixel in it, free or not.
    """
    height, width = pixels.shape[0], pixels.shape[1]
    counts = np.zeros(1 << 15, np.int64)
    keys = np.empty((height, width), np.int32)
    total = 0
    for y in range(height):
        for x in range(width):
            key = ((np.int32(pixels[y, x, 0]) >> 3) << 10) | ((np.int32(pixels[y, x, 1]) >> 3) << 5) | (
                np.int32(pixels[y, x, 2]) >> 3)
            keys[y, x] = key
            if free[y, x]:
                counts[key] += 1
                total += 1
    if total == 0:
        return 0, 0
    top = np.argmax(counts)
    hist = np.zeros((3, 256), np.int64)
    n = 0
    for y in range(height):
        for x in range(width):
            if keys[y, x] == top:
                n += 1
                for c in range(3):
                    hist[c, pixels[y, x, c]] += 1
    colour = np.empty(3, np.float32)
    _median_of(hist, n, colour)
    near = 0
    for y in range(height):
        for x in range(width):
            if free[y, x]:
                inside = True
                for c in range(3):
                    if abs(2 * np.int64(pixels[y, x, c]) - np.int64(2 * colour[c])) > flat_twice:
                        inside = False
                near += inside
    return near, total
