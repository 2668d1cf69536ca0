"""Refitting the code layer on frozen features (silse_spark.training.head) on real avatars."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from silse_spark.decode import decode_avatar


@pytest.fixture(scope="module")
def canvases(demo_avatar_paths: list[Path]) -> np.ndarray:
    decoded = [decode_avatar(p.read_bytes(), size=128) for p in demo_avatar_paths]
    return np.stack([d.pixels for d in decoded if d.pixels is not None])


def test_refitted_code_layer_is_balanced_and_steadier_than_random_directions(
    canvases: np.ndarray, monkeypatch: pytest.MonkeyPatch
) -> None:
    from silse_spark.codes import bits_from_outputs
    from silse_spark.model import MODELS_DIR_ENV, load_model
    from silse_spark.training.head import copy_features, fit_directions, set_code_layer
    from silse_spark.training.pairs import to_input
    from silse_spark.variations import SEED_FAMILIES

    monkeypatch.delenv(MODELS_DIR_ENV, raising=False)  # the shipped silse-v1 trunk
    model = load_model("silse-v1")
    base, moved = copy_features(model, canvases, list(SEED_FAMILIES), copies=3, seed=5)
    assert base.shape == (len(canvases), 256) and moved.shape == (len(canvases), 3, 256)

    w, b, ratios = fit_directions(base, moved, ridge=1e-2)
    assert w.shape == (256, 48) and np.all(np.diff(ratios) <= 1e-9)  # most discriminant first

    def flips(w: np.ndarray, b: np.ndarray) -> float:
        w, b = w[:, :16], b[:16]  # the leading directions: 69 images span at most 68 between-image ones
        orig = (base @ w + b) > 0
        return float(((np.einsum("nkd,dj->nkj", moved, w) + b) > 0).__ne__(orig[:, None]).mean())

    rng = np.random.default_rng(0)
    random_w = rng.normal(size=w.shape)
    random_b = -np.median(base @ random_w, axis=0)
    assert flips(w, b) < 0.75 * flips(random_w, random_b)

    # Installed as the model's last layer, it gives those codes from pixels, each bit split at the median.
    set_code_layer(model, w, b)
    from PIL import Image

    pixels = np.stack([to_input(Image.fromarray(c, "RGB")) for c in canvases]).astype(np.float32)
    bits = bits_from_outputs(np.asarray(model.predict_on_batch(pixels)))
    logits = base @ w + b
    clear = np.abs(logits) > 1e-3  # the median image of each bit sits on its threshold
    assert clear.mean() > 0.95
    np.testing.assert_array_equal(bits[clear], (logits > 0)[clear])
    assert np.all(np.abs(bits.mean(axis=0) - 0.5) <= 1.5 / len(canvases))
    with pytest.raises(ValueError, match="kernel"):
        set_code_layer(model, w[:, :8], b[:8])
