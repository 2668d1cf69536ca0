"""Chance-collision arithmetic and the black-box attack loop."""

from __future__ import annotations

import numpy as np

from silse_spark.reliability import attack, ball_volume, chance_collisions


def test_ball_volume() -> None:
    assert [ball_volume(r) for r in range(3)] == [1, 49, 1177]


def test_balanced_bits_give_the_ideal_48_bit_figures() -> None:
    result = chance_collisions(np.full(48, 0.5), 1e9)
    assert np.isclose(result["p_exact_match_measured_balance"], 2.0**-48)
    assert np.isclose(result["entropy_bits_upper_bound"], 48.0)
    assert 1770 < result["pairs_r0_ideal"] < 1780  # C(1e9, 2) / 2**48


def test_constant_bits_match_everything() -> None:
    result = chance_collisions(np.zeros(48), 10)
    assert result["p_exact_match_measured_balance"] == 1.0
    assert result["pairs_r0_measured"] == 45  # all C(10, 2) pairs collide
    assert result["entropy_bits_upper_bound"] == 0.0


class ThresholdHasher:
    """Bit i = mean brightness > 127.5: any noise that moves the mean across flips it."""

    def outputs(self, pixels: np.ndarray) -> np.ndarray:
        mean = pixels.reshape(len(pixels), -1).mean(axis=1, keepdims=True)
        return np.repeat((mean > 127.5).astype(np.float32), 48, axis=1)


def test_attack_counts_queries_until_the_code_changes() -> None:
    near = np.full((108, 108, 3), 127, dtype=np.uint8)
    near[54:] = 128  # mean exactly 127.5, right at the threshold: noise flips it within a few queries
    far = np.zeros((108, 108, 3), dtype=np.uint8)  # eps=2 can never reach the threshold
    queries = attack(ThresholdHasher(), [near, far], eps=2.0, max_queries=60)
    assert queries[0] is not None and queries[0] <= 60
    assert queries[1] is None
