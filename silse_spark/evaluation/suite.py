"""The variant suite: source images, their altered copies, distinct distractors, ground truth.

:func:`build_suite` turns folders of images into a folder of files plus a
manifest (``manifest.csv``), one row per item:

``item_id``
    Unique id; also the ``account_id`` given to the hash job.
``role``
    ``source`` (an original image), ``copy`` (an altered copy of a source)
    or ``distractor`` (a distinct image with no copies).
``source_id``
    The ground-truth group: a copy has its source's id; every source and
    distractor has its own.
``family``, ``copy_index``
    For copies: the variation family (:data:`silse_spark.variations.FAMILIES`)
    and which of its copies this is.
``path``
    Absolute path of the file to hash.
``origin``
    Where a source or distractor came from (its original path, or
    ``synthetic:<seed>:<i>``).
``file_sha256``
    SHA-256 of the file's bytes.

Sources are hashed from their original bytes (so MD5 sees the real file);
copies are made by :func:`silse_spark.variations.vary` from the source as the
production decoder sees it (first frame, EXIF orientation, alpha on white)
and saved as PNG, which keeps every altered pixel (the ``jpeg`` family has
already been through JPEG). Distractors are the ``--distractors`` images, if
any, and synthetic avatar-like images drawn from a seeded generator, so that
false-match rates rest on enough impostor pairs.

Everything is a function of the inputs and the seed: the same call writes
the same files.

Example
-------
>>> import tempfile
>>> from PIL import Image
>>> src = Path(tempfile.mkdtemp())
>>> Image.new("RGB", (40, 40), "red").save(src / "a.png")
>>> Image.new("RGB", (40, 40), "blue").save(src / "b.png")
>>> m = build_suite(SuiteConfig([src], Path(tempfile.mkdtemp()), copies=1, synthetic=2))
>>> m["role"].value_counts().to_dict()
{'copy': 26, 'source': 2, 'distractor': 2}
"""

from __future__ import annotations

import hashlib
import logging
import shutil
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
from PIL import Image, ImageDraw

from silse_spark.decode import STATUS_OK, decode_avatar
from silse_spark.evaluation.hashers import load_rgb
from silse_spark.evaluation.metrics import ROLE_COPY, ROLE_DISTRACTOR, ROLE_SOURCE
from silse_spark.variations import FAMILIES, encode, vary

log = logging.getLogger(__name__)

IMAGE_SUFFIXES = frozenset({".png", ".jpg", ".jpeg", ".gif", ".webp", ".bmp", ".tif", ".tiff"})
"""File name endings read as images from a sources or distractors folder."""

MANIFEST_COLUMNS = ["item_id", "role", "source_id", "family", "copy_index", "path", "origin", "file_sha256"]

MAX_WORKING_SIDE = 1024
"""Sources larger than this (longest side) are reduced before copies are made,
so a folder of camera photos does not make a suite of 12-megapixel PNGs."""

MIN_SYNTHETIC = 400
"""Fewest synthetic distractors when their number is left to fill the suite."""

_TRIES_PER_COPY = 5


@dataclass(frozen=True)
class SuiteConfig:
    """What goes into a variant suite.

    Parameters
    ----------
    sources
        Folders (searched recursively) or files of source images.
    output
        Folder the suite is written to (emptied first).
    copies
        Altered copies per source per family; ``None`` picks the number that
        brings the suite close to ``target_size``.
    synthetic
        Number of synthetic distractor images; ``None`` fills the suite up to
        ``target_size`` (at least :data:`MIN_SYNTHETIC`).
    distractors
        Extra folders of distinct images used as distractors (no copies).
    families
        Variation families to make copies with.
    target_size
        Approximate number of items wanted when ``copies`` is ``None``.
    seed
        Seed of every random choice.
    """

    sources: Sequence[Path]
    output: Path
    copies: int | None = None
    synthetic: int | None = None
    distractors: Sequence[Path] = field(default_factory=tuple)
    families: Sequence[str] = tuple(FAMILIES)
    target_size: int = 5000
    seed: int = 20260101

    def __post_init__(self) -> None:
        if not self.sources:
            raise ValueError("no source images given: pass at least one folder with --sources")
        if self.copies is not None and self.copies < 1:
            raise ValueError(f"copies must be >= 1, got {self.copies}")
        if self.synthetic is not None and self.synthetic < 0:
            raise ValueError(f"synthetic must be >= 0, got {self.synthetic}")
        unknown = sorted(set(self.families) - set(FAMILIES))
        if unknown:
            raise ValueError(f"unknown variation families {unknown}; expected some of {sorted(FAMILIES)}")


def find_images(locations: Sequence[Path]) -> list[Path]:
    """Image files in the given folders (recursively) or files, sorted, without repeats.

    Raises
    ------
    FileNotFoundError
        If a location does not exist.

    Examples
    --------
    >>> find_images([])
    []
    """
    found: set[Path] = set()
    for loc in locations:
        loc = Path(loc)
        if not loc.exists():
            raise FileNotFoundError(f"image folder or file {loc} does not exist")
        if loc.is_file():
            found.add(loc.resolve())
        else:
            found.update(p.resolve() for p in loc.rglob("*") if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)
    return sorted(found)


def pixel_sha256(data: bytes) -> str | None:
    """SHA-256 of the production decoder's 108x108 RGB pixels, ``None`` if undecodable.

    The same fingerprint the training data manifest records as ``pixel_sha256``.

    Examples
    --------
    >>> pixel_sha256(b"not an image") is None
    True
    """
    decoded = decode_avatar(data)
    if decoded.status != STATUS_OK or decoded.pixels is None:
        return None
    return hashlib.sha256(decoded.pixels.tobytes()).hexdigest()


def synthetic_avatar(rng: np.random.Generator, size: int = 128) -> Image.Image:
    """A distinct avatar-like image: a background and a few random shapes.

    Examples
    --------
    >>> synthetic_avatar(np.random.default_rng(0)).size
    (128, 128)
    """
    def colour() -> tuple[int, int, int]:
        r, g, b = (int(c) for c in rng.integers(0, 256, size=3))
        return r, g, b

    top, bottom = np.array(colour(), dtype=np.float64), np.array(colour(), dtype=np.float64)
    ramp = np.linspace(0.0, 1.0, size)[:, None, None]
    if rng.random() < 0.5:
        ramp = np.transpose(ramp, (1, 0, 2))
    background = top + (bottom - top) * ramp * np.ones((size, size, 1))
    img = Image.fromarray(np.clip(background, 0, 255).astype(np.uint8), "RGB")
    draw = ImageDraw.Draw(img)
    if rng.random() < 0.3:
        # Identicon: a mirrored 5x5 grid of cells, as many sites draw default avatars.
        cells = rng.random((5, 3)) < 0.5
        grid = np.concatenate([cells, cells[:, 1::-1]], axis=1)
        step = size // 6
        fill = colour()
        for (y, x), on in np.ndenumerate(grid):
            if on:
                x0, y0 = step // 2 + x * step, step // 2 + y * step
                draw.rectangle((x0, y0, x0 + step - 1, y0 + step - 1), fill=fill)
        return img
    for _ in range(int(rng.integers(2, 7))):
        x0, y0, x1, y1 = (int(v) for v in rng.integers(0, size, size=4))
        box = (min(x0, x1), min(y0, y1), max(x0, x1) + 8, max(y0, y1) + 8)
        kind = int(rng.integers(0, 4))
        if kind == 0:
            draw.ellipse(box, fill=colour())
        elif kind == 1:
            draw.rectangle(box, fill=colour())
        elif kind == 2:
            points = [(int(a), int(b)) for a, b in rng.integers(0, size, size=(int(rng.integers(3, 7)), 2))]
            draw.polygon(points, fill=colour())
        else:
            draw.line(box, fill=colour(), width=int(rng.integers(2, 10)))
    return img


def _auto_copies(n_sources: int, n_distractors: int, n_families: int, target: int) -> int:
    room = target - n_sources - n_distractors
    return max(1, round(room / max(1, n_sources * n_families)))


def _working_image(path: Path) -> Image.Image:
    img = load_rgb(str(path))
    if max(img.size) > MAX_WORKING_SIDE:
        img.thumbnail((MAX_WORKING_SIDE, MAX_WORKING_SIDE), Image.Resampling.LANCZOS)
    return img


def _sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def build_suite(config: SuiteConfig) -> pd.DataFrame:
    """Write the suite's files under ``config.output`` and return its manifest.

    Source files that cannot be decoded, or whose decoded pixels repeat an
    earlier source's, are skipped with a warning: every source must be a
    distinct, hashable image for the ground truth to hold. The manifest is
    also written to ``config.output / "manifest.csv"``.

    Raises
    ------
    ValueError
        If no usable source image is found.
    """
    out = Path(config.output)
    if out.exists():
        shutil.rmtree(out)
    for sub in ("sources", "copies", "distractors"):
        (out / sub).mkdir(parents=True)

    rows: list[dict[str, object]] = []
    seen_pixels: dict[str, str] = {}

    def accept(path: Path, kind: str) -> bytes | None:
        data = path.read_bytes()
        fingerprint = pixel_sha256(data)
        if fingerprint is None:
            log.warning("skipping %s %s: the production decoder cannot read it", kind, path)
            return None
        if fingerprint in seen_pixels:
            log.warning("skipping %s %s: same pixels as %s", kind, path, seen_pixels[fingerprint])
            return None
        seen_pixels[fingerprint] = str(path)
        return data

    source_paths = find_images(config.sources)
    accepted: list[tuple[Path, bytes]] = []
    for path in source_paths:
        data = accept(path, "source")
        if data is not None:
            accepted.append((path, data))
    if not accepted:
        raise ValueError(
            f"no decodable source images under {[str(s) for s in config.sources]}; "
            f"expected files ending in {sorted(IMAGE_SUFFIXES)}"
        )
    families = list(config.families)
    max_sources = max(1, config.target_size // (len(families) + 1)) if config.copies is None else len(accepted)
    if len(accepted) > max_sources:
        keep = np.sort(np.random.default_rng(config.seed).choice(len(accepted), max_sources, replace=False))
        log.warning("using %d of %d source images to keep the suite near %d items",
                    max_sources, len(accepted), config.target_size)
        accepted = [accepted[i] for i in keep]

    distractor_inputs: list[tuple[Path, bytes]] = []
    for path in find_images(config.distractors):
        data = accept(path, "distractor")
        if data is not None:
            distractor_inputs.append((path, data))
    reserve = len(distractor_inputs) + (MIN_SYNTHETIC if config.synthetic is None else config.synthetic)
    copies = config.copies or _auto_copies(len(accepted), reserve, len(families), config.target_size)

    for s, (path, data) in enumerate(accepted):
        source_id = f"s{s:05d}"
        target = out / "sources" / f"{source_id}{path.suffix.lower()}"
        target.write_bytes(data)
        rows.append({"item_id": source_id, "role": ROLE_SOURCE, "source_id": source_id, "family": None,
                     "copy_index": None, "path": str(target), "origin": str(path), "file_sha256": _sha256(data)})
        img = _working_image(path)
        for f, family in enumerate(families):
            # One generator per (source, family) so adding a family leaves the others unchanged.
            rng = np.random.default_rng([config.seed, s, f])
            made_here: set[str] = set()
            for _ in range(copies * _TRIES_PER_COPY):
                if len(made_here) == copies:
                    break
                copy_bytes = encode(vary(img, family, rng), "PNG")
                # Deterministic families (hflip, greyscale) give one copy, and small
                # shifts can repeat: an identical file is one copy, not two.
                if _sha256(copy_bytes) in made_here:
                    continue
                k = len(made_here)
                made_here.add(_sha256(copy_bytes))
                item_id = f"{source_id}-{family}-{k}"
                target = out / "copies" / f"{item_id}.png"
                target.write_bytes(copy_bytes)
                rows.append({"item_id": item_id, "role": ROLE_COPY, "source_id": source_id, "family": family,
                             "copy_index": k, "path": str(target), "origin": str(path),
                             "file_sha256": _sha256(copy_bytes)})

    def add_distractor(data: bytes, suffix: str, origin: str) -> None:
        d = sum(r["role"] == ROLE_DISTRACTOR for r in rows)
        item_id = f"d{d:05d}"
        target = out / "distractors" / f"{item_id}{suffix}"
        target.write_bytes(data)
        rows.append({"item_id": item_id, "role": ROLE_DISTRACTOR, "source_id": item_id, "family": None,
                     "copy_index": None, "path": str(target), "origin": origin, "file_sha256": _sha256(data)})

    for path, data in distractor_inputs:
        add_distractor(data, path.suffix.lower(), str(path))
    n_synthetic = config.synthetic
    if n_synthetic is None:
        n_synthetic = max(MIN_SYNTHETIC, config.target_size - len(rows) - len(distractor_inputs))
    made = 0
    for i in range(10 * n_synthetic + 10):
        if made == n_synthetic:
            break
        data = encode(synthetic_avatar(np.random.default_rng([config.seed, 1_000_003, i])), "PNG")
        fingerprint = pixel_sha256(data)
        if fingerprint is None or fingerprint in seen_pixels:
            continue
        seen_pixels[fingerprint] = f"synthetic:{config.seed}:{i}"
        add_distractor(data, ".png", f"synthetic:{config.seed}:{i}")
        made += 1

    manifest = pd.DataFrame(rows, columns=MANIFEST_COLUMNS)
    roles = manifest["role"].value_counts()
    log.info("suite: %d sources, %d families, up to %d copies each (%d copies), %d distractors: %d images",
             roles.get(ROLE_SOURCE, 0), len(families), copies, roles.get(ROLE_COPY, 0),
             roles.get(ROLE_DISTRACTOR, 0), len(manifest))
    manifest["copy_index"] = manifest["copy_index"].astype("Int64")
    manifest.to_csv(out / "manifest.csv", index=False)
    return manifest


def read_manifest(path: Path) -> pd.DataFrame:
    """Read a manifest written by :func:`build_suite`.

    Raises
    ------
    ValueError
        If a required column is missing.
    """
    manifest = pd.read_csv(path, dtype={"item_id": str, "source_id": str, "family": object})
    missing = sorted(set(MANIFEST_COLUMNS) - set(manifest.columns))
    if missing:
        raise ValueError(f"{path} is not a suite manifest: missing columns {missing}")
    manifest["family"] = manifest["family"].where(manifest["family"].notna(), None)
    return manifest
