"""Build a folder of full-bleed "photo avatars" for ``make eval-photos``: square crops of installed wallpapers.

    python scripts/build_photo_sources.py --output work/photo-sources

The demo avatars (and most of the training corpus) are drawings on plain
backgrounds; users also upload photographs, which fill the whole frame. This
script cuts square crops at random places and scales (a quarter to 70% of the
shorter side, saved as ``--size`` px PNG) out of the photographs and
paintings of two Debian packages, ``mate-backgrounds`` (nature photographs)
and ``plasma-workspace-wallpapers`` (photographs and digital paintings),
installed with apt-get like ``make data``'s packages (``--install``). Nothing
is downloaded at run time besides that. The same arguments write the same
files.

Crops of one wallpaper are distinct images but can look alike (two crops of
the same meadow), so false-match rates on this set are an upper bound.
"""

from __future__ import annotations

import argparse
import shutil
from pathlib import Path

import numpy as np
from PIL import Image

from silse_spark.training.data import ensure_debian_packages

PACKAGES = ("mate-backgrounds", "plasma-workspace-wallpapers")
MATE = Path("/usr/share/backgrounds/mate/nature")
PLASMA = Path("/usr/share/wallpapers")


def wallpapers() -> list[Path]:
    """One file per wallpaper: every MATE nature photograph, the largest landscape image of each Plasma one."""
    found = sorted(MATE.glob("*.jpg")) + sorted(MATE.glob("*.png"))
    for folder in sorted(p for p in PLASMA.glob("*/contents/images") if p.is_dir()):
        candidates = []
        for f in folder.iterdir():
            try:
                w, h = (int(v) for v in f.stem.split("x"))
            except ValueError:
                continue
            if w >= h:
                candidates.append((w * h, f))
        if candidates:
            found.append(max(candidates)[1])
    return found


def build(output: Path, crops: int, size: int, seed: int) -> int:
    """Write ``crops`` crops of each wallpaper into ``output``; return how many files were written."""
    sources = wallpapers()
    if not sources:
        raise SystemExit(f"no wallpapers under {MATE} or {PLASMA}; install {' '.join(PACKAGES)}")
    if output.exists():
        shutil.rmtree(output)
    output.mkdir(parents=True)
    rng = np.random.default_rng(seed)
    written = 0
    for source in sources:
        with Image.open(source) as opened:
            img = opened.convert("RGB")
        short = min(img.size)
        name = source.parent.parent.parent.name if source.parent.name == "images" else source.stem
        for k in range(crops):
            side = int(short * rng.uniform(0.25, 0.7))
            x, y = int(rng.integers(0, img.width - side + 1)), int(rng.integers(0, img.height - side + 1))
            crop = img.resize((size, size), Image.Resampling.LANCZOS, box=(x, y, x + side, y + side))
            crop.save(output / f"{name}_{k:02d}.png")
            written += 1
    return written


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--output", type=Path, required=True, help="folder to (re)create")
    parser.add_argument("--crops", type=int, default=12, help="crops per wallpaper")
    parser.add_argument("--size", type=int, default=256, help="side of each crop in pixels")
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--install", action="store_true", help="apt-get install the packages if missing")
    args = parser.parse_args()
    ensure_debian_packages(PACKAGES, args.install)
    count = build(args.output, args.crops, args.size, args.seed)
    print(f"wrote {count} photo avatars from {len(wallpapers())} wallpapers to {args.output}")


if __name__ == "__main__":
    main()
