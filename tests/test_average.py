"""Averaging a run's snapshots (silse_spark.training.average): the mean of the weights, batch-norm statistics
recomputed from training pairs, exported and registered with its digest."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from silse_spark.training.average import main, mean_weights, recompute_batch_norm
from silse_spark.training.train import float32_model, get_config

CONFIG = "v1f-d3"


@pytest.fixture()
def run(tmp_path: Path, demo_avatar_paths: list[Path]) -> Path:
    """A checkpoint folder with two snapshots of different weights, and a corpus of 16 demo avatars."""
    import keras

    from silse_spark.model import build_model

    config = get_config(CONFIG)
    snapshots = tmp_path / "ck" / CONFIG / "snapshots"
    snapshots.mkdir(parents=True)
    for step, seed in ((100, 1), (200, 2)):
        keras.utils.set_random_seed(seed)
        keras.mixed_precision.set_global_policy("float32")
        model = build_model(config.architecture)
        model.save_weights(str(snapshots / f"step-{step:06d}.weights.h5"))
    canvases = np.stack([np.asarray(Image.open(p).convert("RGB").resize((128, 128))) for p in demo_avatar_paths[:16]])
    np.save(tmp_path / "train.npy", canvases)
    (tmp_path / "models").mkdir()
    return tmp_path


def _argv(run: Path, *extra: str) -> list[str]:
    return ["--config", CONFIG, "--data", str(run), "--checkpoints", str(run / "ck"), "--models-dir",
            str(run / "models"), *extra]


def _snapshot(run: Path, step: int) -> list[np.ndarray]:
    return float32_model(get_config(CONFIG), run / "ck" / CONFIG / "snapshots" / f"step-{step:06d}.weights.h5"
                         ).get_weights()


def _is_statistic(model: object) -> list[bool]:
    """For each weight of ``model``: whether it is a batch-norm moving statistic."""
    import keras

    flags = []
    for layer in model.layers:  # type: ignore[attr-defined]
        for variable in layer.weights:
            flags.append(isinstance(layer, keras.layers.BatchNormalization) and "moving" in variable.path)
    return flags


def test_mean_weights_refuses_different_layouts() -> None:
    with pytest.raises(ValueError, match="different layouts"):
        mean_weights([[np.zeros(3)], [np.zeros(4)]])
    with pytest.raises(ValueError, match="no weights"):
        mean_weights([])


def test_average_without_recomputation_is_the_mean_of_every_weight(run: Path) -> None:
    assert main(_argv(run, "--steps", "100", "200", "--bn-batches", "0", "--export", "avg-r1")) == 0
    exported = float32_model(get_config(CONFIG), run / "models" / "avg-r1.weights.h5").get_weights()
    first, second = _snapshot(run, 100), _snapshot(run, 200)
    assert any(not np.allclose(x, y) for x, y in zip(first, second, strict=True))
    for got, x, y in zip(exported, first, second, strict=True):
        np.testing.assert_allclose(got, (x + y) / 2, rtol=1e-6, atol=1e-7)
    entry = json.loads((run / "models" / "registry.json").read_text())["models"]["avg-r1"]
    assert entry["sha256"] == hashlib.sha256((run / "models" / "avg-r1.weights.h5").read_bytes()).hexdigest()
    assert entry["framing"] == get_config(CONFIG).framing
    assert "steps 100, 200" in entry["description"] and "statistics averaged too" in entry["description"]


def test_recomputation_changes_only_the_batch_norm_statistics(run: Path) -> None:
    argv = _argv(run, "--steps", "100", "200", "--bn-batches", "2", "--batch-size", "8", "--export", "avg-r2")
    assert main(argv) == 0
    model = float32_model(get_config(CONFIG), run / "models" / "avg-r2.weights.h5")
    exported = model.get_weights()
    mean = [(x + y) / 2 for x, y in zip(_snapshot(run, 100), _snapshot(run, 200), strict=True)]
    statistic = _is_statistic(model)
    assert sum(statistic) >= 2
    for got, want, is_statistic in zip(exported, mean, statistic, strict=True):
        if is_statistic:
            assert not np.allclose(got, want)
        else:
            np.testing.assert_allclose(got, want, rtol=1e-6, atol=1e-7)
    # Same seed, same pairs, same statistics: the export is reproducible bit for bit.
    assert main(argv[:-1] + ["avg-r3"]) == 0
    for x, y in zip(exported, float32_model(get_config(CONFIG), run / "models" / "avg-r3.weights.h5").get_weights(),
                    strict=True):
        np.testing.assert_array_equal(x, y)


def test_recomputation_at_momentum_zero_gives_the_batch_statistics(run: Path) -> None:
    import keras

    model = float32_model(get_config(CONFIG), run / "ck" / CONFIG / "snapshots" / "step-000100.weights.h5")
    norm = next(layer for layer in model.layers if isinstance(layer, keras.layers.BatchNormalization))
    canvases = np.load(run / "train.npy")
    a = np.stack([np.asarray(Image.fromarray(c).resize((108, 108))) for c in canvases[:8]])
    b = a[:, :, ::-1]
    probe = keras.Model(model.input, norm.input)
    activations = np.asarray(probe(np.concatenate([a, b]).astype(np.float32))).reshape(-1, norm.input.shape[-1])
    momentum = norm.momentum
    assert recompute_batch_norm(model, iter([(a, b)]), 1, momentum=0.0) >= 2
    np.testing.assert_allclose(norm.moving_mean.numpy(), activations.mean(axis=0), rtol=1e-4, atol=1e-4)
    np.testing.assert_allclose(norm.moving_variance.numpy(), activations.var(axis=0), rtol=1e-3, atol=1e-4)
    assert norm.momentum == momentum  # restored


def test_missing_snapshot_is_named_with_the_ones_there(run: Path, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exc:
        main(_argv(run, "--steps", "100", "300", "--export", "avg-r4"))
    assert exc.value.code == 2
    err = capsys.readouterr().err
    assert "no step-000300.weights.h5" in err and "step-000100.weights.h5, step-000200.weights.h5" in err
    assert not (run / "models" / "avg-r4.weights.h5").exists()


def test_missing_corpus_is_named_before_any_work(run: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (run / "train.npy").unlink()
    with pytest.raises(SystemExit):
        main(_argv(run, "--steps", "100", "200", "--export", "avg-r5"))
    err = capsys.readouterr().err
    assert "train.npy" in err and "make data" in err and "--bn-batches 0" in err
    assert not (run / "models" / "avg-r5.weights.h5").exists()
