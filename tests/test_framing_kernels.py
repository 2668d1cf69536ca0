"""The framing's compiled kernels (silse_spark.framing_kernels) equal their numpy / scipy definitions exactly.

A twin value depends on every pixel the framing hands the model, so the kernels must give the same integers and
the same float32 medians as the array code they replace, on real avatars and their copies (shifted and turned on
coloured grounds, where the corner regions matter) and on random images made to have irregular regions.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from scipy import ndimage

from silse_spark import framing_kernels as kernels
from silse_spark.framing import FLAT_LEVELS, LOW, MAX_PEEL, RING_UNIFORM, _ring
from silse_spark.variations import rotate, shift_h, shift_w


def _twice_distance(pixels: np.ndarray, colour: np.ndarray) -> np.ndarray:
    twice = np.rint(np.asarray(colour, np.float64) * 2).astype(np.int32)
    return np.abs(pixels.astype(np.int32) * 2 - twice).max(axis=2).astype(np.int16)


def _median(values: np.ndarray) -> np.ndarray:
    return np.median(values.astype(np.float32), axis=0).astype(np.float32)


def _seed_region(pixels: np.ndarray, y: int, x: int, seeds: np.ndarray, covered: np.ndarray, keep_out: int
                 ) -> tuple[np.ndarray, bool, bool, int, int]:
    """The definition: scipy's 4-connected labels of the pixels within LOW / 2 of the seed's colour."""
    to_seed = _twice_distance(pixels, pixels[y, x])
    labels, _ = ndimage.label(to_seed <= LOW)
    ids = {int(labels[sy, sx]) for sy, sx in seeds if labels[sy, sx] and not covered[sy, sx]}
    mask = np.isin(labels, list(ids))
    height, width = mask.shape
    thin = not mask[keep_out : height - keep_out, keep_out : width - keep_out].any()
    margin = any(all(labels[cy, cx] == label for cy, cx in seeds[:4]) for label in ids)
    return mask, thin, margin, int((to_seed[mask] <= 2 * FLAT_LEVELS).sum()), int(mask.sum())


def _images(demo_avatar_paths: list[Path], count: int = 60) -> list[np.ndarray]:
    """Demo avatars, their copies shifted or turned on a coloured ground (fill unlike the ground), and random
    images of blocks with noise (irregular regions, thresholds crossed), in several sizes."""
    rng = np.random.default_rng(30)
    out = []
    for path in demo_avatar_paths[:count]:
        img = Image.open(path).convert("RGBA")
        ground = Image.new("RGB", img.size, tuple(int(v) for v in rng.integers(0, 256, 3)))
        ground.paste(img, (0, 0), img)
        out += [np.asarray(ground), np.asarray(img.convert("RGB"))]
        out += [np.asarray(vary(ground, rng)) for vary in (shift_h, shift_w, rotate)]
    for _ in range(count):
        height, width = (int(v) for v in rng.integers(5, 129, 2))
        blocks = rng.integers(0, 256, (int(rng.integers(2, 9)), int(rng.integers(2, 9)), 3), dtype=np.uint8)
        field = np.asarray(Image.fromarray(blocks).resize((width, height), Image.Resampling.NEAREST), np.int64)
        noise = int(rng.choice([0, 10, 25]))
        out.append(np.clip(field + rng.integers(-noise, noise + 1, field.shape), 0, 255).astype(np.uint8))
    # Patterns that are hard on a flood fill: a checkerboard (every pixel its own region), a comb (runs opening
    # on every other column), a serpentine path through the whole image.
    yy, xx = np.mgrid[:128, :128]
    comb = ((xx % 2 == 0) | (yy == 127)) & ~((yy == 0) & (xx % 4 == 2))
    serpentine = (yy % 4 != 3) | np.where((yy // 4) % 2 == 0, xx == 127, xx == 0)
    for pattern in ((yy + xx) % 2 == 0, comb, serpentine):
        out.append(np.where(pattern[..., None], np.uint8(255), np.uint8(0)).repeat(3, axis=2))
    return [np.ascontiguousarray(a) for a in out]


@pytest.fixture(scope="module")
def images(demo_avatar_paths: list[Path]) -> list[np.ndarray]:
    return _images(demo_avatar_paths)


def test_twice_distance_and_medians_equal_numpy(images: list[np.ndarray]) -> None:
    rng = np.random.default_rng(1)
    for pixels in images:
        colour = rng.integers(0, 511, 3) / 2  # multiples of 1/2, as medians of integers are
        np.testing.assert_array_equal(
            kernels.twice_distance(pixels, np.rint(colour * 2).astype(np.int64)), _twice_distance(pixels, colour))
        values = pixels.reshape(-1, 3)[: int(rng.integers(1, pixels.shape[0] * pixels.shape[1] + 1))]
        np.testing.assert_array_equal(kernels.median(np.ascontiguousarray(values)), _median(values))
        inset = int(rng.integers(0, min(pixels.shape[:2]) // 2))
        np.testing.assert_array_equal(kernels.ring_median(pixels, inset), _median(_ring(pixels, inset)))
    with pytest.raises(ValueError, match="no pixels"):
        kernels.median(np.zeros((0, 3), np.uint8))


def test_peel_rings_stops_at_the_first_ring_that_is_not_uniform(images: list[np.ndarray]) -> None:
    stops = []
    for pixels in images:
        limit = int(MAX_PEEL * min(pixels.shape[:2]))
        for start in range(min(limit, 2)):
            stop, medians = kernels.peel_rings(pixels, start, limit, LOW, RING_UNIFORM)
            expected = start
            while expected < limit:
                ring = _ring(pixels, expected).astype(np.float32)
                median = _median(ring)
                np.testing.assert_array_equal(medians[expected], median)
                if (np.abs(ring - median).max(axis=1) <= LOW).mean() < RING_UNIFORM:
                    break
                expected += 1
            assert stop == expected
            stops.append(stop)
    assert 0 in stops and max(stops) > 3  # both outcomes, early and late, were checked


def test_seed_regions_equal_scipys_connected_components(images: list[np.ndarray]) -> None:
    kinds = set()
    for pixels in images:
        height, width = pixels.shape[:2]
        corners = ((0, 0), (0, width - 1), (height - 1, 0), (height - 1, width - 1))
        seeds = np.array(corners + ((0, width // 2), (height - 1, width // 2), (height // 2, 0),
                                    (height // 2, width - 1)), np.int64)
        keep_out = int(np.ceil(MAX_PEEL * min(height, width)))
        covered = np.zeros((height, width), bool)
        for y, x in seeds:  # as the framing walks the seeds, each region covering the next seeds
            if covered[y, x]:
                continue
            got = kernels.seed_region(pixels, y, x, seeds, covered, int(LOW), 2 * FLAT_LEVELS, keep_out)
            expected = _seed_region(pixels, y, x, seeds, covered, keep_out)
            np.testing.assert_array_equal(got[0], expected[0])
            assert got[1:] == expected[1:]
            kinds.add(got[1:3])
            covered |= got[0]
    assert {(True, False), (False, False), (False, True)} <= kinds  # thin, not thin, margins around the corners


def test_dominant_flat_counts_the_pixels_near_the_most_common_colour(images: list[np.ndarray]) -> None:
    rng = np.random.default_rng(2)
    for pixels in images:
        free = rng.random(pixels.shape[:2]) < rng.uniform(0.3, 1.0)
        q = (pixels >> 3).astype(np.int32)
        key = (q[..., 0] << 10) | (q[..., 1] << 5) | q[..., 2]
        top = int(np.argmax(np.bincount(key[free], minlength=1 << 15)))
        near = _twice_distance(pixels, _median(pixels[key == top])) <= 2 * FLAT_LEVELS
        assert kernels.dominant_flat(pixels, free, 2 * FLAT_LEVELS) == (int((near & free).sum()), int(free.sum()))
    assert kernels.dominant_flat(images[0], np.zeros(images[0].shape[:2], bool), 2 * FLAT_LEVELS) == (0, 0)


def test_kernels_compile_where_neither_the_package_nor_home_is_writable(tmp_path: Path) -> None:
    """An executor's unpacked archive and home may both be read-only: numba would refuse to import the module
    (no cache locator); the kernels then cache in the temporary directory. (Tests run as root, for whom
    permissions do not bind, so the package's cache folder is blocked by a file of that name instead.)"""
    package = tmp_path / "pkg" / "silse_spark"
    package.mkdir(parents=True)
    (package / "__init__.py").write_text("")
    (package / "framing_kernels.py").write_text(Path(kernels.__file__).read_text())
    (package / "__pycache__").write_text("not a folder")
    cache = tmp_path / "tmp"
    cache.mkdir()
    env = {**os.environ, "PYTHONPATH": str(package.parent), "HOME": "/dev/null/home", "XDG_CACHE_HOME": "/dev/null/c",
           "TMPDIR": str(cache)}
    env.pop("NUMBA_CACHE_DIR", None)
    code = ("import numpy as np; from silse_spark import framing_kernels as k; "
            "print(int(k.twice_distance(np.zeros((4, 4, 3), np.uint8), np.array([2, 2, 2])).sum()))")
    done = subprocess.run([sys.executable, "-c", code], env=env, cwd=tmp_path, capture_output=True, text=True,
                          timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.strip() == "32"  # 16 pixels, each twice 1 level from the colour in 3 channels: max 2
    assert any((cache / "silse-numba-cache").rglob("*.nbi"))  # cached where it could be
