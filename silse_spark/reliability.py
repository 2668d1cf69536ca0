"""Numbers for docs/reliability.md: black-box attack cost and chance collisions at scale.

    python -m silse_spark.reliability --output docs [--images 20] [--max-queries 300]

Attack: a hard-label black-box attacker who may query the model (image in,
twin value out) adds uniform random noise within an L-infinity ball of radius
eps (in 0..255 pixel units, a perceptually small change for eps <= 8) and
stops at the first query whose code differs from the original. We count
queries per image. Chance collisions: from measured per-bit means, the
probability that two unrelated images share a code, and what that means at
1 billion accounts for exact codes and for radius 1 and 2.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from pathlib import Path
from typing import Any

import numpy as np

from silse_spark.codes import CODE_BITS, twin_bits_from_bits
from silse_spark.decode import decode_avatar
from silse_spark.demo import list_images

REPO = Path(__file__).resolve().parents[1]


def ball_volume(radius: int, bits: int = CODE_BITS) -> int:
    """Number of codes within Hamming distance ``radius`` of a code (itself included).

    >>> ball_volume(2)
    1177
    """
    return sum(math.comb(bits, k) for k in range(radius + 1))


def chance_collisions(bit_means: np.ndarray, accounts: float) -> dict[str, float]:
    """Expected unrelated pairs sharing a code (or within r) among ``accounts`` images.

    Assumes independent bits with the measured means (correlated bits make it worse;
    the measured false-match rate of the evaluation is the empirical check).
    """
    p = np.clip(np.asarray(bit_means, dtype=np.float64), 0.0, 1.0)
    p_match = float(np.prod(p**2 + (1 - p) ** 2))
    pairs = accounts * (accounts - 1) / 2
    ideal = 2.0**-CODE_BITS
    safe_p, safe_q = np.where(p > 0, p, 1.0), np.where(p < 1, 1 - p, 1.0)
    entropy = float(-np.sum(p * np.log2(safe_p) + (1 - p) * np.log2(safe_q)))
    return {
        "p_exact_match_measured_balance": p_match,
        "p_exact_match_ideal": ideal,
        "entropy_bits_upper_bound": entropy,
        **{f"pairs_r{r}_measured": pairs * p_match * ball_volume(r) for r in range(3)},
        **{f"pairs_r{r}_ideal": pairs * ideal * ball_volume(r) for r in range(3)},
    }


def attack(hasher: Any, images: list[np.ndarray], eps: float, max_queries: int, seed: int = 0) -> list[int | None]:
    """Queries until the code changes, per image (``None``: unchanged after ``max_queries``)."""
    from silse_spark.codes import twin_values_from_outputs

    rng = np.random.default_rng(seed)
    results: list[int | None] = []
    batch = 50
    for img in images:
        original = twin_values_from_outputs(hasher.outputs(img[None]))[0][0]
        found: int | None = None
        for start in range(0, max_queries, batch):
            n = min(batch, max_queries - start)
            noise = rng.uniform(-eps, eps, size=(n, *img.shape))
            candidates = np.clip(np.rint(img[None].astype(np.float32) + noise), 0, 255).astype(np.uint8)
            codes = twin_values_from_outputs(hasher.outputs(candidates))[0]
            changed = [i for i, c in enumerate(codes) if c != original]
            if changed:
                found = start + changed[0] + 1
                break
        results.append(found)
    return results


def run(output: Path, sources: Path, n_images: int, max_queries: int, version: str | None) -> dict[str, Any]:
    from silse_spark.codes import bits_from_outputs
    from silse_spark.model import cached_hasher, get_model_spec

    hasher = cached_hasher(version)
    framing = get_model_spec(version).framing
    paths = list_images(sources)
    pixels = [d.pixels for d in (decode_avatar(p.read_bytes(), framing=framing) for p in paths)
              if d.pixels is not None]
    bits = bits_from_outputs(hasher.outputs(np.stack(pixels)))
    means = bits.mean(axis=0)
    collisions = chance_collisions(means, 1e9)
    distinct = len(set(twin_bits_from_bits(bits).tolist()))
    rng = np.random.default_rng(0)
    chosen = [pixels[i] for i in rng.choice(len(pixels), size=min(n_images, len(pixels)), replace=False)]
    attacks = {}
    for eps in (2.0, 4.0, 8.0):
        q = attack(hasher, chosen, eps, max_queries)
        done = sorted(x for x in q if x is not None)
        attacks[str(eps)] = {
            "images": len(q), "changed": len(done),
            "median_queries_when_changed": float(np.median(done)) if done else None,
            "queries": q,
        }
    result = {"model_version": hasher.version, "sources": str(sources), "images_for_balance": len(pixels),
              "distinct_codes": distinct, "bit_means": means.round(4).tolist(),
              "chance_collisions_at_1e9": collisions, "attack": attacks, "max_queries": max_queries}
    output.mkdir(parents=True, exist_ok=True)
    (output / "reliability.json").write_text(json.dumps(result, indent=2))
    return result


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--output", type=Path, default=Path("docs"))
    parser.add_argument("--sources", type=Path, default=REPO.parent / "shared" / "data" / "demo_avatars")
    parser.add_argument("--images", type=int, default=20)
    parser.add_argument("--max-queries", type=int, default=300)
    parser.add_argument("--model", default=None)
    args = parser.parse_args(argv)
    result = run(args.output, args.sources, args.images, args.max_queries, args.model)
    print(json.dumps({k: v for k, v in result.items() if k != "bit_means"}, indent=2)[:4000])
    return 0


if __name__ == "__main__":
    sys.exit(main())
