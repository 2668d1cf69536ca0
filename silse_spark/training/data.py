"""Build the training corpus from installable, freely licensed image packages.

Sources (origins), all installed by ``apt-get`` / ``npm``, never downloaded
at product run time:

``openclipart``
    Debian ``openclipart-png`` (public-domain clip art, PNG).
``papirus``
    Debian ``papirus-icon-theme`` (SVG icons, 64x64 set, rendered at 128).
``oxygen``
    Debian ``oxygen-icon-theme`` (PNG icons, largest size per icon name).
``noto_emoji``
    Debian ``fonts-noto-color-emoji``: the colour bitmaps (CBDT PNGs) of the font.
``dicebear``
    npm ``@dicebear/core@9`` + ``@dicebear/collection@9``: avatars of every
    style for a range of seeds, SVG rendered to PNG with ``rsvg-convert``.

Every candidate file is decoded twice with the production decoder
(:func:`silse_spark.decode.decode_avatar`): at 108x108 for ``pixel_sha256``
(the identity the evaluation harness compares) and at 128x128, the stored
canvas, so that rotation / shift / crop variations can be applied before the
resize to the model's 108x108 input. Candidates are dropped when near-blank,
when their pixels duplicate an earlier candidate (sha256 of the 108x108
pixels, or an identical pHash), and when they match an evaluation (demo)
avatar: same ``pixel_sha256`` or pHash within :data:`DEMO_PHASH_RADIUS` bits.

The split is by source group: all renderings of one icon name, clip-art
stem, emoji base code point or DiceBear style+seed go to the same split,
chosen by a hash of ``origin/group``, so validation images are never
altered versions of training images.

Outputs in ``--output``: ``train.npy`` and ``val.npy`` (uint8,
``(n, 128, 128, 3)``), ``sources.csv`` (``source_id, origin, file_sha256,
pixel_sha256, split``; rows of each split in array order) and
``summary.json`` (counts per origin and per drop reason).

Run ``python -m silse_spark.training.data --output work/training``.
"""

from __future__ import annotations

import argparse
import csv
import hashlib
import json
import logging
import os
import re
import shutil
import subprocess  # nosec B404  # fixed argument lists, no shell
import sys
import time
from collections import Counter
from collections.abc import Iterable, Sequence
from concurrent.futures import ProcessPoolExecutor, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from silse_spark.decode import STATUS_OK, decode_avatar

log = logging.getLogger(__name__)

CANVAS = 128
"""Side of the stored training canvas, in pixels."""

DEMO_PHASH_RADIUS = 8
"""A candidate within this many pHash bits of a demo avatar is excluded."""

VAL_PERCENT = 6
"""Share of source groups (per origin) held out for validation."""

OPENCLIPART_DIR = Path("/usr/share/openclipart/png")
PAPIRUS_DIR = Path("/usr/share/icons/Papirus/64x64")
OXYGEN_DIR = Path("/usr/share/icons/oxygen/base")
EMOJI_FONT = Path("/usr/share/fonts/truetype/noto/NotoColorEmoji.ttf")
DEMO_DIR = Path(__file__).resolve().parents[3] / "shared" / "data" / "demo_avatars"
APT_PACKAGES = (
    "openclipart-png", "papirus-icon-theme", "oxygen-icon-theme", "fonts-noto-color-emoji", "librsvg2-bin",
)
NPM_PACKAGES = ("@dicebear/core@9", "@dicebear/collection@9")
RENDER_SCRIPT = Path(__file__).resolve().parent / "render_dicebear.mjs"

ORIGINS = ("openclipart", "papirus", "oxygen", "noto_emoji", "dicebear")


@dataclass(frozen=True)
class Candidate:
    """One image file that may enter the corpus."""

    source_id: str
    origin: str
    group: str
    path: Path


@dataclass(frozen=True)
class Processed:
    """A decoded candidate: identities, the 128x128 canvas, its pHash, or why it failed."""

    file_sha256: str
    pixel_sha256: str
    canvas: np.ndarray | None
    phash: int
    status: str


# --------------------------------------------------------------------- helpers


def is_near_blank(canvas: np.ndarray, min_std: float = 6.0, min_ink_fraction: float = 0.02) -> bool:
    """True if an image is almost uniform: tiny spread or almost no pixel off its median colour.

    Examples
    --------
    >>> is_near_blank(np.full((8, 8, 3), 255, dtype=np.uint8))
    True
    """
    arr = np.asarray(canvas, dtype=np.int16)
    if float(arr.std()) < min_std:
        return True
    median = np.median(arr.reshape(-1, 3), axis=0)
    ink = np.abs(arr - median).max(axis=-1) > 32
    return float(ink.mean()) < min_ink_fraction


def phash_int(canvas: np.ndarray) -> int:
    """The 64-bit perceptual hash (``imagehash.phash``) of an RGB array, as an int."""
    import imagehash
    from PIL import Image

    return int(str(imagehash.phash(Image.fromarray(np.asarray(canvas, dtype=np.uint8), "RGB"))), 16)


def split_for(origin: str, group: str, val_percent: int = VAL_PERCENT) -> str:
    """Deterministic split of a source group: ``'val'`` for about ``val_percent``% of groups.

    >>> split_for("dicebear", "lorelei/1") in ("train", "val")
    True
    """
    digest = hashlib.sha256(f"{origin}/{group}".encode()).digest()
    return "val" if int.from_bytes(digest[:4], "big") % 100 < val_percent else "train"


def process_bytes(data: bytes) -> Processed:
    """Decode file bytes as production does (108) and as the training canvas (128)."""
    file_sha = hashlib.sha256(data).hexdigest()
    small = decode_avatar(data)
    if small.status != STATUS_OK or small.pixels is None:
        return Processed(file_sha, "", None, 0, small.status)
    big = decode_avatar(data, size=CANVAS)
    if big.pixels is None:
        return Processed(file_sha, "", None, 0, big.status)
    pixel_sha = hashlib.sha256(small.pixels.tobytes()).hexdigest()
    if is_near_blank(big.pixels):
        return Processed(file_sha, pixel_sha, None, 0, "near_blank")
    return Processed(file_sha, pixel_sha, big.pixels, phash_int(big.pixels), STATUS_OK)


def _process_path(path: Path) -> Processed:
    try:
        data = path.read_bytes()
    except OSError as exc:
        log.warning("cannot read %s: %s", path, exc)
        return Processed("", "", None, 0, "read_error")
    return process_bytes(data)


def hamming64(a: np.ndarray, b: int) -> np.ndarray:
    """Bit distance between each of the uint64 hashes ``a`` and the hash ``b``."""
    x = np.bitwise_xor(np.asarray(a, dtype=np.uint64), np.uint64(b))
    return np.unpackbits(x.view(np.uint8).reshape(-1, 8), axis=1).sum(axis=1)


def select(
    candidates: Sequence[Candidate],
    processed: Sequence[Processed],
    demo_pixel_sha: set[str],
    demo_phashes: Sequence[int],
    radius: int = DEMO_PHASH_RADIUS,
) -> tuple[list[int], Counter[str]]:
    """Indices of candidates kept, and a count of every drop reason.

    A candidate is dropped if it failed to decode, is near-blank, matches a
    demo avatar (pixel hash or pHash within ``radius``), or duplicates an
    earlier kept candidate (pixel hash, file hash or identical pHash).
    """
    demo = np.asarray(list(demo_phashes), dtype=np.uint64)
    seen_pixels: set[str] = set()
    seen_files: set[str] = set()
    seen_phash: set[int] = set()
    kept: list[int] = []
    reasons: Counter[str] = Counter()
    for i, (cand, proc) in enumerate(zip(candidates, processed, strict=True)):
        if proc.status != STATUS_OK:
            reasons[proc.status] += 1
        elif proc.pixel_sha256 in demo_pixel_sha:
            reasons["demo_pixel_match"] += 1
        elif len(demo) and int(hamming64(demo, proc.phash).min()) <= radius:
            reasons["demo_phash_match"] += 1
        elif proc.pixel_sha256 in seen_pixels or proc.file_sha256 in seen_files:
            reasons["duplicate_content"] += 1
        elif proc.phash in seen_phash:
            reasons["duplicate_phash"] += 1
        else:
            seen_pixels.add(proc.pixel_sha256)
            seen_files.add(proc.file_sha256)
            seen_phash.add(proc.phash)
            kept.append(i)
        log.debug("candidate %s: %s", cand.source_id, proc.status)
    return kept, reasons


# ------------------------------------------------------------------ collection


def ensure_debian_packages(packages: Sequence[str], install: bool) -> None:
    """Check the Debian ``packages`` are installed; ``apt-get install`` the missing ones if ``install``.

    Raises
    ------
    SystemExit
        Naming the missing packages and the command that installs them, when ``install`` is false.
    """
    missing = [p for p in packages if subprocess.run(  # nosec B603 B607
        ["dpkg", "-s", p], capture_output=True, check=False).returncode != 0]
    if not missing:
        return
    if not install:
        raise SystemExit(f"missing Debian packages {missing}; run: apt-get install -y {' '.join(missing)} "
                         "(or pass --install)")
    log.info("installing Debian packages %s with apt-get (one time)", missing)
    subprocess.run(["apt-get", "install", "-y", "-q", *missing], check=True)  # nosec B603 B607


def ensure_installed(npm_dir: Path, install: bool) -> None:
    """Check the Debian and npm packages are present; install them if ``install``."""
    ensure_debian_packages(APT_PACKAGES, install)
    if not (npm_dir / "node_modules" / "@dicebear" / "collection").is_dir():
        if not install:
            raise SystemExit(f"missing npm packages in {npm_dir}; run: npm install --prefix {npm_dir} "
                             f"{' '.join(NPM_PACKAGES)} (or pass --install)")
        log.info("installing %s with npm into %s (one time)", NPM_PACKAGES, npm_dir)
        npm_dir.mkdir(parents=True, exist_ok=True)
        subprocess.run(["npm", "install", "--no-audit", "--no-fund", "--prefix", str(npm_dir),  # nosec B603 B607
                        *NPM_PACKAGES], check=True)


def render_svgs(pairs: Iterable[tuple[Path, Path]], workers: int) -> None:
    """Render SVG -> 128x128 PNG with rsvg-convert, skipping outputs that exist."""
    todo = [(s, d) for s, d in pairs if not d.exists()]

    def one(pair: tuple[Path, Path]) -> None:
        src, dst = pair
        dst.parent.mkdir(parents=True, exist_ok=True)
        result = subprocess.run(  # nosec B603 B607
            ["rsvg-convert", "-w", str(CANVAS), "-h", str(CANVAS), str(src), "-o", str(dst)],
            capture_output=True, check=False,
        )
        if result.returncode != 0:
            log.warning("rsvg-convert failed on %s: %s", src, result.stderr.decode(errors="replace")[:200])

    with ThreadPoolExecutor(max_workers=workers) as pool:
        list(pool.map(one, todo))


_CLIPART_STEM = re.compile(r"_\d+$")


def openclipart_candidates(limit: int) -> list[Candidate]:
    files = sorted(OPENCLIPART_DIR.rglob("*.png"))[:limit]
    out = []
    for f in files:
        rel = f.relative_to(OPENCLIPART_DIR)
        out.append(Candidate(f"openclipart/{rel}", "openclipart", _CLIPART_STEM.sub("", f.stem), f))
    return out


def papirus_candidates(raw: Path, limit: int, workers: int) -> list[Candidate]:
    svgs: dict[str, Path] = {}
    for f in sorted(PAPIRUS_DIR.rglob("*.svg")):
        if f.is_symlink() or f.stem in svgs:
            continue  # symlinks are aliases of the same drawing
        svgs[f.stem] = f
    chosen = sorted(svgs.items())[:limit]
    pairs = [(src, raw / "papirus" / f"{name}.png") for name, src in chosen]
    render_svgs(pairs, workers)
    return [Candidate(f"papirus/{src.relative_to(PAPIRUS_DIR)}", "papirus", name, dst)
            for (name, src), (_, dst) in zip(chosen, pairs, strict=True) if dst.exists()]


def oxygen_candidates(limit: int) -> list[Candidate]:
    best: dict[str, Path] = {}
    for size in ("256x256", "128x128"):  # largest rendering of each icon name wins
        for f in sorted((OXYGEN_DIR / size).rglob("*.png")):
            if f.stem not in best and not f.is_symlink():
                best[f.stem] = f
    chosen = sorted(best.items())[:limit]
    return [Candidate(f"oxygen/{p.relative_to(OXYGEN_DIR)}", "oxygen", name, p) for name, p in chosen]


def emoji_candidates(raw: Path, limit: int) -> list[Candidate]:
    from fontTools.ttLib import TTFont  # type: ignore[import-untyped]

    out_dir = raw / "noto_emoji"
    out_dir.mkdir(parents=True, exist_ok=True)
    font = TTFont(str(EMOJI_FONT))
    strike = font["CBDT"].strikeData[0]
    out = []
    for name in sorted(strike)[:limit]:
        data = getattr(strike[name], "imageData", b"")
        if not data.startswith(b"\x89PNG"):
            continue
        path = out_dir / f"{name}.png"
        if not path.exists():
            path.write_bytes(data)
        # Skin-tone and gender variants share the first code point: one group.
        group = name.split("_")[0].split(".")[0]
        out.append(Candidate(f"noto_emoji/{name}", "noto_emoji", group, path))
    return out


def dicebear_candidates(raw: Path, npm_dir: Path, per_style: int, workers: int) -> list[Candidate]:
    svg_dir = raw / "dicebear_svg"
    env = {**os.environ, "DICEBEAR_MODULES": str(npm_dir / "node_modules")}
    subprocess.run(["node", str(RENDER_SCRIPT), str(svg_dir), str(per_style), "silse-train"],  # nosec B603 B607
                   check=True, env=env)
    svgs = sorted(svg_dir.glob("*.svg"))
    pairs = [(s, raw / "dicebear" / f"{s.stem}.png") for s in svgs]
    render_svgs(pairs, workers)
    return [Candidate(f"dicebear/{dst.stem.replace('__', '/')}", "dicebear", dst.stem, dst)
            for _, dst in pairs if dst.exists()]


def demo_identities(demo_dir: Path) -> tuple[set[str], list[int]]:
    """pixel_sha256 and pHash of every demo (evaluation) avatar."""
    shas: set[str] = set()
    phashes: list[int] = []
    for f in sorted(demo_dir.rglob("*")):
        if f.suffix.lower() not in (".png", ".jpg", ".jpeg", ".gif", ".webp"):
            continue
        data = f.read_bytes()
        small = decode_avatar(data)
        big = decode_avatar(data, size=CANVAS)
        if small.pixels is None or big.pixels is None:
            log.warning("demo avatar %s does not decode: %s", f, small.error)
            continue
        shas.add(hashlib.sha256(small.pixels.tobytes()).hexdigest())
        phashes.append(phash_int(big.pixels))
    return shas, phashes


# ------------------------------------------------------------------------ main


def build_corpus(output: Path, npm_dir: Path, per_origin: int, dicebear_per_style: int, workers: int,
                 install: bool, demo_dir: Path = DEMO_DIR) -> dict[str, object]:
    """Collect, decode, filter, split and store the corpus; return the summary."""
    started = time.time()
    ensure_installed(npm_dir, install)
    raw = output / "raw"
    demo_sha, demo_phash = demo_identities(demo_dir)
    if not demo_phash:
        raise SystemExit(f"no demo avatars found in {demo_dir}; they are needed to exclude evaluation images")
    log.info("%d demo avatars to exclude", len(demo_phash))
    candidates: list[Candidate] = []
    candidates += openclipart_candidates(per_origin)
    candidates += papirus_candidates(raw, per_origin, workers)
    candidates += oxygen_candidates(per_origin)
    candidates += emoji_candidates(raw, per_origin)
    candidates += dicebear_candidates(raw, npm_dir, dicebear_per_style, workers)
    log.info("%d candidates collected in %.0f s: %s", len(candidates), time.time() - started,
             dict(Counter(c.origin for c in candidates)))
    with ProcessPoolExecutor(max_workers=workers) as pool:
        processed = list(pool.map(_process_path, [c.path for c in candidates], chunksize=64))
    kept, reasons = select(candidates, processed, demo_sha, demo_phash)
    by_split: dict[str, list[int]] = {"train": [], "val": []}
    for i in kept:
        by_split[split_for(candidates[i].origin, candidates[i].group)].append(i)
    output.mkdir(parents=True, exist_ok=True)
    for split, idx in by_split.items():
        canvases = [c for c in (processed[i].canvas for i in idx) if c is not None]  # kept => decoded
        arr = np.stack(canvases) if canvases else np.zeros((0, CANVAS, CANVAS, 3), np.uint8)
        np.save(output / f"{split}.npy", arr.astype(np.uint8))
    with open(output / "sources.csv", "w", newline="", encoding="utf-8") as fh:
        writer = csv.writer(fh)
        writer.writerow(["source_id", "origin", "file_sha256", "pixel_sha256", "split"])
        for split, idx in by_split.items():
            for i in idx:
                c, p = candidates[i], processed[i]
                writer.writerow([c.source_id, c.origin, p.file_sha256, p.pixel_sha256, split])
    summary: dict[str, object] = {
        "candidates": len(candidates),
        "candidates_per_origin": dict(Counter(c.origin for c in candidates)),
        "kept": len(kept),
        "dropped": dict(reasons),
        "train": len(by_split["train"]),
        "val": len(by_split["val"]),
        "per_origin": {s: dict(Counter(candidates[i].origin for i in idx)) for s, idx in by_split.items()},
        "demo_avatars": len(demo_phash),
        "demo_phash_radius": DEMO_PHASH_RADIUS,
        "canvas": CANVAS,
        "seconds": round(time.time() - started, 1),
    }
    (output / "summary.json").write_text(json.dumps(summary, indent=2) + "\n", encoding="utf-8")
    return summary


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--output", type=Path, required=True, help="output folder, e.g. work/training")
    parser.add_argument("--npm-dir", type=Path, default=Path("work/npm"), help="where @dicebear/* is installed")
    parser.add_argument("--per-origin", type=int, default=9000, help="max candidates per package origin")
    parser.add_argument("--dicebear-per-style", type=int, default=300, help="seeds rendered per DiceBear style")
    parser.add_argument("--workers", type=int, default=os.cpu_count() or 2)
    parser.add_argument("--install", action="store_true", help="apt-get / npm install missing packages")
    parser.add_argument("--demo-dir", type=Path, default=DEMO_DIR, help="evaluation avatars to exclude")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    if shutil.which("node") is None or (shutil.which("rsvg-convert") is None and not args.install):
        log.error("node and rsvg-convert are needed (apt-get install nodejs librsvg2-bin)")
        return 2
    summary = build_corpus(args.output, args.npm_dir, args.per_origin, args.dicebear_per_style,
                           args.workers, args.install, args.demo_dir)
    print(json.dumps(summary, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
