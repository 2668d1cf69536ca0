"""Build the demo data set: honest accounts plus planted spam campaigns.

From a folder of distinct avatars, every avatar is used by one honest
account, and a few avatars are reused by spam campaigns of 5 to 40 accounts
each, every copy altered with the seed variations (rotation up to +-10
degrees, shift in height or width up to 10%, per-channel scaling 0.9..1.1,
or all combined), about half of them re-encoded as JPEG. Two broken files
show how bad records come out. Everything is seeded: the same command writes
the same bytes.

Writes ``OUTPUT/images/``, ``OUTPUT/manifest.csv`` (``account_id,path``, the
hash job's input) and ``OUTPUT/truth.csv`` (``account_id,source,campaign,
family``: ground truth for checks).

Usage::

    python -m silse_spark.demo --sources ../shared/data/demo_avatars --output work/demo
"""

from __future__ import annotations

import argparse
import csv
import logging
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

from silse_spark.variations import SEED_FAMILIES, encode, vary

log = logging.getLogger(__name__)

IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".gif", ".webp"}


@dataclass(frozen=True)
class DemoConfig:
    """How many campaigns and how large; validated on creation."""

    campaigns: int = 8
    min_accounts: int = 5
    max_accounts: int = 40
    jpeg_fraction: float = 0.5
    seed: int = 20261125

    def __post_init__(self) -> None:
        if self.campaigns < 0:
            raise ValueError(f"campaigns must be >= 0, got {self.campaigns}")
        if not 1 <= self.min_accounts <= self.max_accounts:
            raise ValueError(
                f"need 1 <= min_accounts <= max_accounts, got {self.min_accounts}..{self.max_accounts}"
            )
        if not 0.0 <= self.jpeg_fraction <= 1.0:
            raise ValueError(f"jpeg_fraction must be in [0, 1], got {self.jpeg_fraction}")


def list_images(folder: Path) -> list[Path]:
    """Image files under ``folder`` (recursive), sorted for determinism."""
    return sorted(p for p in folder.rglob("*") if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)


def build_demo(sources: Path, output: Path, config: DemoConfig = DemoConfig()) -> dict[str, int]:
    """Write the demo images, manifest and truth; return counts by kind."""
    images = list_images(sources)
    if not images:
        raise ValueError(f"no images under {sources}; expected a folder of .png/.jpg avatars")
    if config.campaigns > len(images):
        raise ValueError(f"{config.campaigns} campaigns need as many source images, found {len(images)}")
    rng = np.random.default_rng(config.seed)
    out_images = output / "images"
    out_images.mkdir(parents=True, exist_ok=True)
    manifest: list[tuple[str, str]] = []
    truth: list[tuple[str, str, str, str]] = []

    for src in images:
        account = f"honest_{src.parent.name}_{src.stem}"
        dest = out_images / f"{account}{src.suffix.lower()}"
        dest.write_bytes(src.read_bytes())
        manifest.append((account, str(dest.resolve())))
        truth.append((account, src.name, "", "original"))

    families = sorted(SEED_FAMILIES)
    chosen = rng.choice(len(images), size=config.campaigns, replace=False)
    for c, index in enumerate(sorted(int(i) for i in chosen)):
        src = images[index]
        campaign = f"c{c:02d}"
        size = int(rng.integers(config.min_accounts, config.max_accounts + 1))
        with Image.open(src) as opened:
            base = opened.convert("RGBA")
        white = Image.new("RGBA", base.size, (255, 255, 255, 255))
        base_rgb = Image.alpha_composite(white, base).convert("RGB")
        for n in range(size):
            family = families[int(rng.integers(len(families)))]
            copy = vary(base_rgb, family, rng)
            as_jpeg = bool(rng.random() < config.jpeg_fraction)
            quality = int(rng.integers(75, 96))
            data = encode(copy, "JPEG", quality) if as_jpeg else encode(copy, "PNG")
            account = f"spam_{campaign}_{n:03d}"
            dest = out_images / f"{account}.{'jpg' if as_jpeg else 'png'}"
            dest.write_bytes(data)
            manifest.append((account, str(dest.resolve())))
            truth.append((account, src.name, campaign, family + ("+jpeg" if as_jpeg else "")))

    # Two broken uploads: a truncated PNG and a text file named .jpg.
    good = encode(Image.new("RGB", (96, 96), (200, 30, 30)), "PNG")
    broken = {
        "broken_truncated": ("png", good[: len(good) // 2]),
        "broken_not_an_image": ("jpg", b"<html><body>not an image</body></html>\n"),
    }
    for account, (suffix, data) in broken.items():
        dest = out_images / f"{account}.{suffix}"
        dest.write_bytes(data)
        manifest.append((account, str(dest.resolve())))
        truth.append((account, "", "", "broken"))

    _write_csv(output / "manifest.csv", ("account_id", "path"), manifest)
    _write_csv(output / "truth.csv", ("account_id", "source", "campaign", "family"), truth)
    counts = {
        "honest": len(images),
        "campaigns": config.campaigns,
        "spam": sum(1 for t in truth if t[2]),
        "broken": len(broken),
    }
    log.info("demo data in %s: %s", output, counts)
    return counts


def _write_csv(path: Path, header: tuple[str, ...], rows: Sequence[tuple[str, ...]]) -> None:
    with open(path, "w", newline="", encoding="utf-8") as fh:
        writer = csv.writer(fh)
        writer.writerow(header)
        writer.writerows(rows)


def main(argv: list[str] | None = None) -> int:
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    parser = argparse.ArgumentParser(description="Build the silse demo data set")
    parser.add_argument("--sources", required=True, type=Path, help="folder of distinct avatars")
    parser.add_argument("--output", required=True, type=Path, help="where to write images and manifest")
    parser.add_argument("--campaigns", type=int, default=DemoConfig.campaigns)
    parser.add_argument("--seed", type=int, default=DemoConfig.seed)
    args = parser.parse_args(argv)
    try:
        counts = build_demo(args.sources, args.output, DemoConfig(campaigns=args.campaigns, seed=args.seed))
    except ValueError as exc:
        print(f"demo: error: {exc}", file=sys.stderr)
        return 2
    print(f"demo data: {counts['honest']} honest accounts, {counts['spam']} spam accounts in "
          f"{counts['campaigns']} campaigns, {counts['broken']} broken files -> {args.output}/manifest.csv")
    return 0


if __name__ == "__main__":
    sys.exit(main())
