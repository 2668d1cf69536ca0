"""make bench's inputs (silse_spark.bench): every file it times the job on is a distinct image."""

from __future__ import annotations

import hashlib
from pathlib import Path

from conftest import DEMO_AVATARS

from silse_spark.bench import make_images


def test_bench_images_are_distinct_files(tmp_path: Path, demo_avatar_paths: list[Path]) -> None:
    # The job decodes each distinct content once: a repeated file would count as an image it never decoded
    # (drawn without the check, 1,000 files repeated 59 contents: hflip and greyscale give the same picture).
    paths = make_images(tmp_path / "images", 1000, DEMO_AVATARS)
    digests = {hashlib.sha256(p.read_bytes()).hexdigest() for p in paths}
    assert len(paths) == 1000 and len(digests) == 1000
    assert sorted(p.name for p in paths)[:2] == ["img000000.png", "img000001.jpg"]  # both formats, in order


def test_later_bench_images_are_new_contents(tmp_path: Path) -> None:
    # make bench-incremental adds "new uploads" to a night: with the first call's digests they are new contents,
    # even where a family gives the same picture every time (without them, 18 of 200 repeated one of the first 1,000).
    seen: set[bytes] = set()
    first = make_images(tmp_path / "old", 1000, DEMO_AVATARS, seen=seen)
    later = make_images(tmp_path / "new", 200, DEMO_AVATARS, seed=2, prefix="new", seen=seen)
    digests = {hashlib.sha256(p.read_bytes()).hexdigest() for p in first + later}
    assert len(digests) == 1200 and len(seen) == 1200
    assert later[0].name == "new000000.png"
