"""Build a folder of held-out "icon avatars" for ``make eval-icons``: drawings from icon themes training never saw.

    python scripts/build_icon_sources.py --output work/icon-sources --install

``make eval`` alters the 69 demo avatars, a small set that every earlier
decision has seen. This suite is a second, independent sample of drawn
avatars, from three Debian icon themes that ``make data`` does not use
(training draws on Papirus, Oxygen, Openclipart, Noto emoji and DiceBear):
``tango-icon-theme`` (public domain; SVGs rendered with ``rsvg-convert``),
``gnome-icon-theme`` and ``moka-icon-theme`` (their 256x256 PNGs). Symbolic
links (aliases of one drawing) are skipped. Each icon is laid on a
background, as an uploaded avatar would be flattened: white for half of them,
a seeded random solid colour for the other half, and saved as a ``--size``
px PNG. Near-blank icons are dropped, and so is any icon within
:data:`PHASH_RADIUS` pHash bits of one already kept (the themes share
designs: a folder and a folder with an emblem are one drawing for this
purpose), so the suite's sources are distinct drawings. Then ``--count`` of
them are kept at random (seeded). Nothing is downloaded at run time besides
the apt-get install; the same arguments write the same files.

``make eval-icons`` runs the evaluation on this folder without the demo
avatars; the evaluation itself checks that no image equals a training image
(file or pixel SHA-256).
"""

from __future__ import annotations

import argparse
import shutil
import tempfile
from pathlib import Path

import numpy as np
from PIL import Image

from silse_spark.training.data import ensure_debian_packages, hamming64, is_near_blank, phash_int, render_svgs

THEME_SETS: dict[str, tuple[tuple[str, Path, str], ...]] = {
    # (name, folder, "svg" to render or "png" to read); symbolic links are skipped.
    "a": (("tango", Path("/usr/share/icons/Tango/scalable"), "svg"),
          ("gnome", Path("/usr/share/icons/gnome/256x256"), "png"),
          ("moka", Path("/usr/share/icons/Moka/256x256"), "png")),
    "b": (("numix", Path("/usr/share/icons/Numix-Circle/48/apps"), "svg"),
          ("suru", Path("/usr/share/icons/suru"), "svg"),
          ("elementary", Path("/usr/share/icons/elementary-xfce"), "png128")),
    "c": (("paper", Path("/usr/share/icons/Paper/512x512"), "png"),
          ("deepin", Path("/usr/share/icons/bloom/apps/256"), "svg"),
          ("gartoon", Path("/usr/share/icons/gartoon/scalable"), "svg")),
}
"""Set ``a`` is ``make eval-icons``; set ``b`` (``make eval-icons SET=b``) is a second held-out sample from three
other themes, kept apart to judge changes found by looking at set ``a``; set ``c`` (``SET=c``) a third, built after a
rule was written for it (Paper's 512 px PNGs, Deepin's bloom application icons, Gartoon), to judge a change that
sets ``a`` and ``b`` had both been used to find."""
PACKAGES = {"a": ("tango-icon-theme", "gnome-icon-theme", "moka-icon-theme", "librsvg2-bin"),
            "b": ("numix-icon-theme-circle", "suru-icon-theme", "elementary-xfce-icon-theme", "librsvg2-bin"),
            "c": ("paper-icon-theme", "deepin-icon-theme", "gnome-icon-theme-gartoon", "librsvg2-bin")}
PHASH_RADIUS = 8
"""Icons within this many pHash bits of a kept icon count as the same drawing and are dropped."""


def icon_files(theme_set: str, rendered: Path) -> list[tuple[str, Path]]:
    """``(name, RGBA file)`` for every drawing of a set: SVGs rendered into ``rendered``, PNGs as they are."""
    found: list[tuple[str, Path]] = []
    for theme, folder, kind in THEME_SETS[theme_set]:
        if kind == "svg":
            svgs = sorted(f for f in folder.rglob("*.svg") if not f.is_symlink())
            pairs = [(src, rendered / f"{theme}_{src.parent.name}_{src.stem}.png") for src in svgs]
            render_svgs(pairs, workers=2)
            found += [(dst.stem, dst) for _, dst in pairs if dst.exists()]
        else:  # "png": every PNG; "png128": the 128x128 folders' PNGs
            pattern = "*/128/*.png" if kind == "png128" else "*.png"
            for f in sorted(folder.rglob(pattern)):
                if not f.is_symlink():
                    found.append((f"{theme}_{f.parent.name if kind == 'png' else f.parent.parent.name}_{f.stem}", f))
    return found


def flatten(path: Path, size: int, background: tuple[int, int, int]) -> np.ndarray:
    """The icon laid on ``background`` and resized to ``size`` x ``size``, as RGB pixels."""
    with Image.open(path) as opened:
        icon = opened.convert("RGBA")
    canvas = Image.new("RGBA", icon.size, (*background, 255))
    canvas.alpha_composite(icon)
    return np.asarray(canvas.convert("RGB").resize((size, size), Image.Resampling.LANCZOS))


def build(output: Path, count: int, size: int, seed: int, theme_set: str = "a") -> tuple[int, int]:
    """Write ``count`` distinct icons of ``theme_set`` into ``output``; return (written, distinct drawings found)."""
    missing = [str(folder) for _, folder, _ in THEME_SETS[theme_set] if not folder.is_dir()]
    if missing:
        raise SystemExit(f"icon themes missing: {missing}; install {' '.join(PACKAGES[theme_set][:3])}")
    rng = np.random.default_rng(seed)
    kept: list[tuple[str, np.ndarray]] = []
    hashes = np.zeros(0, dtype=np.uint64)
    with tempfile.TemporaryDirectory() as tmp:
        for name, path in icon_files(theme_set, Path(tmp)):
            red, green, blue = (255, 255, 255) if rng.random() < 0.5 else (int(v) for v in rng.integers(0, 256, 3))
            try:
                pixels = flatten(path, size, (red, green, blue))
            except (OSError, ValueError):
                continue  # an unreadable file in a theme is not a drawing
            if is_near_blank(pixels):
                continue
            h = phash_int(pixels)
            if len(hashes) and int(hamming64(hashes, h).min()) <= PHASH_RADIUS:
                continue
            kept.append((name, pixels))
            hashes = np.append(hashes, np.uint64(h))
    chosen = np.sort(rng.choice(len(kept), min(count, len(kept)), replace=False))
    if output.exists():
        shutil.rmtree(output)
    output.mkdir(parents=True)
    for i in chosen:
        name, pixels = kept[int(i)]
        Image.fromarray(pixels).save(output / f"{name}.png")
    return len(chosen), len(kept)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--output", type=Path, required=True, help="folder to (re)create")
    parser.add_argument("--count", type=int, default=600, help="icons to keep (the suite samples from them)")
    parser.add_argument("--size", type=int, default=128, help="side of each icon avatar in pixels")
    parser.add_argument("--seed", type=int, default=11)
    parser.add_argument("--set", dest="theme_set", choices=sorted(THEME_SETS), default="a",
                        help="which themes: a (make eval-icons), b or c (further held-out samples)")
    parser.add_argument("--install", action="store_true", help="apt-get install the packages if missing")
    args = parser.parse_args()
    ensure_debian_packages(PACKAGES[args.theme_set], args.install)
    written, distinct = build(args.output, args.count, args.size, args.seed, args.theme_set)
    print(f"wrote {written} icon avatars (of {distinct} distinct drawings) to {args.output}")


if __name__ == "__main__":
    main()
