"""Training code: losses on known inputs, a real optimisation step, configs, corpus helpers, export."""

from __future__ import annotations

import dataclasses
import hashlib
import inspect
import io
import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image, ImageDraw

from silse_spark.decode import decode_avatar
from silse_spark.training import losses
from silse_spark.training.data import (
    Candidate,
    hamming64,
    is_near_blank,
    process_bytes,
    select,
    split_for,
)
from silse_spark.training.train import (
    CONFIGS,
    NegativeMemory,
    TrainConfig,
    TrainConfigError,
    TrainState,
    build_trainable,
    get_config,
    load_checkpoint,
    make_objective,
    permute_output_bits,
    register_model,
    save_checkpoint,
    train_step,
)
from silse_spark.training.validate import effective_bits, false_match_rates
from silse_spark.variations import encode


def f32(x: object) -> np.ndarray:
    return np.asarray(x, dtype=np.float32)


@pytest.fixture(autouse=True)
def _seeded_keras() -> None:
    """Every test builds its networks from the same initial weights, so a training-step test cannot pass or fail
    by the draw of a fresh random initialisation (unseeded, one of six runs of this file failed on 2026-12-01)."""
    import keras

    keras.utils.set_random_seed(0)


# ---------------------------------------------------------------- losses


def test_seed_loss_similar_pair_is_the_mae() -> None:
    a, b = f32(np.full((2, 48), 0.2)), f32(np.full((2, 48), 0.7))
    assert float(losses.seed_pair_loss(a, a, f32([0, 0]))) == pytest.approx(0.0, abs=1e-6)
    assert float(losses.seed_pair_loss(a, b, f32([0, 0]))) == pytest.approx(0.5, abs=1e-6)


def test_seed_loss_different_pair_is_one_minus_log_mae() -> None:
    a, b = f32(np.full((1, 48), 0.2)), f32(np.full((1, 48), 0.7))
    assert float(losses.seed_pair_loss(a, b, f32([1]))) == pytest.approx(1 - np.log(0.5), rel=1e-5)
    # Identical outputs for different images: large but finite (log of the epsilon floor).
    same = float(losses.seed_pair_loss(a, a, f32([1])))
    assert same == pytest.approx(1 - np.log(losses.EPSILON), rel=1e-4)
    assert same > float(losses.seed_pair_loss(a, b, f32([1])))


def test_seed_batch_loss_prefers_stable_and_distinct_codes() -> None:
    rng = np.random.default_rng(0)
    distinct = f32(rng.integers(0, 2, (8, 48)) * 0.98 + 0.01)
    good = float(losses.seed_batch_loss(distinct, distinct))        # copies equal, rows differ
    collapsed = f32(np.full((8, 48), 0.5))
    bad = float(losses.seed_batch_loss(collapsed, collapsed))       # every image the same code
    unstable = float(losses.seed_batch_loss(distinct, 1 - distinct))
    assert good < unstable
    assert good < bad


def test_v1_terms_on_known_inputs() -> None:
    ones = f32(np.ones((2, 48)))
    assert float(losses.positive_margin_loss(ones, ones, 0.5)) == 0.0
    assert float(losses.positive_margin_loss(ones, -ones, 0.5)) == pytest.approx(1.5)
    opposite = f32([[1.0] * 48, [-1.0] * 48])
    assert float(losses.negative_similarity_loss(opposite, opposite, 0.0, 1.0)) == 0.0
    # Row 1's copy identical to row 0: that off-diagonal pair has similarity 1.
    assert float(losses.negative_similarity_loss(opposite, opposite[[0, 0]], 0.0, 0.0)) == pytest.approx(0.5)
    assert float(losses.balance_loss(opposite)) == 0.0
    assert float(losses.balance_loss(ones)) == pytest.approx(1.0)
    assert float(losses.quantisation_loss(ones)) == 0.0
    assert float(losses.quantisation_loss(f32(np.zeros((1, 48))))) == pytest.approx(1.0)
    rng = np.random.default_rng(1)
    independent = f32(rng.choice([-1.0, 1.0], size=(512, 48)))
    copied = f32(np.repeat(independent[:, :1], 48, axis=1))
    assert float(losses.decorrelation_loss(independent)) < 0.01
    assert float(losses.decorrelation_loss(copied)) > 0.95
    # Exact-code term: one flipped bit costs 1/48 in the mean margin loss but a full hinge among the weakest 4.
    flipped = np.ones((2, 48), np.float32)
    flipped[0, 7] = -1.0
    assert float(losses.positive_margin_loss(ones, f32(flipped), 0.5)) == pytest.approx(1.5 / 96)
    assert float(losses.weakest_bits_loss(ones, f32(flipped), 0.5, 4)) == pytest.approx(1.5 / 8)
    assert float(losses.weakest_bits_loss(ones, ones, 0.5, 4)) == 0.0


def test_pair_objective_splits_rows_into_originals_and_copies() -> None:
    rng = np.random.default_rng(2)
    codes = f32(rng.integers(0, 2, (6, 48)) * 0.9 + 0.05)
    objective = losses.PairObjective(kind="v1", balance_weight=1.0, decorrelation_weight=1.0,
                                     quantisation_weight=1.0)
    stable = float(objective(np.zeros((12, 1)), np.concatenate([codes, codes])))
    flipped = float(objective(np.zeros((12, 1)), np.concatenate([codes, 1 - codes])))
    assert np.isfinite(stable) and stable < flipped
    with pytest.raises(ValueError, match="loss kind"):
        losses.PairObjective(kind="triplet")


def test_each_configuration_reaches_the_objective_and_its_saved_config() -> None:
    settings = [p for p in inspect.signature(losses.PairObjective.__init__).parameters
                if p not in ("self", "kind", "name", "kwargs")]
    assert tuple(settings) == losses.OBJECTIVE_SETTINGS  # a new loss setting must be listed to be configurable
    for config in CONFIGS.values():
        restored = losses.PairObjective.from_config(make_objective(config).get_config())
        assert restored.kind == config.loss
        assert {s: getattr(restored, s) for s in settings} == {s: getattr(config, s) for s in settings}, config.name


def _numpy_memory_loss(u: np.ndarray, ids: np.ndarray, memory: np.ndarray, memory_ids: np.ndarray,
                       margin: float, hard_weight: float) -> float:
    """The memory term written out with loops, as the reference."""
    excess = np.zeros((len(u), len(memory)))
    counted = np.zeros_like(excess)
    for i in range(len(u)):
        for j in range(len(memory)):
            if memory_ids[j] >= 0 and memory_ids[j] != ids[i]:
                counted[i, j] = 1.0
                excess[i, j] = max(float(u[i] @ memory[j]) / u.shape[1] - margin, 0.0)
    soft = float((excess ** 2).sum() / max(counted.sum(), 1.0))
    return soft + hard_weight * float(excess.max(axis=1).mean())


def test_memory_negative_loss_matches_numpy_and_masks_the_same_image() -> None:
    rng = np.random.default_rng(5)
    u = f32(np.tanh(rng.normal(size=(6, 48))))
    memory = f32(np.tanh(rng.normal(size=(10, 48))))
    memory[3] = u[2]                         # row 2's own image, kept earlier: identical, must not count
    ids = f32([0, 1, 2, 3, 4, 5])
    memory_ids = f32([9, 8, 7, 2, 6, -1, 11, 12, 1, 13])   # slot 5 is empty
    got = float(losses.memory_negative_loss(u, ids, memory, memory_ids, -0.1, 0.7))
    want = _numpy_memory_loss(u, ids, memory, memory_ids, -0.1, 0.7)
    assert got == pytest.approx(want, rel=1e-5)
    unmasked = memory_ids.copy()
    unmasked[3] = 20.0
    assert float(losses.memory_negative_loss(u, ids, memory, unmasked, -0.1, 0.7)) > got + 0.01
    # An empty memory adds nothing.
    assert float(losses.memory_negative_loss(u, ids, memory, np.full(10, -1.0, np.float32), 0.0, 1.0)) == 0.0


def test_negative_memory_keeps_the_last_k_batches() -> None:
    memory = NegativeMemory(batches=3, rows=2, bits=4)
    assert (memory.ids == -1).all()
    for step in range(5):
        memory.push(np.full((2, 4), step, np.float32), np.array([10 * step, 10 * step + 1]))
    # Only batches 2, 3 and 4 remain: 3 overwrote 0, 4 overwrote 1.
    assert sorted(memory.ids.tolist()) == [20, 21, 30, 31, 40, 41]
    assert sorted(set(memory.outputs[:, 0].tolist())) == [2.0, 3.0, 4.0]
    targets = memory.targets(np.array([5, 6]))
    assert targets.shape == (2, 1 + 3 * 5)
    np.testing.assert_array_equal(targets[:, 0], [5, 6])
    unpacked = targets[:, 1:].reshape(-1, 5)                  # as PairObjective reads it
    np.testing.assert_array_equal(unpacked[:, 0], memory.ids)
    np.testing.assert_array_equal(unpacked[:, 1:], memory.outputs)
    with pytest.raises(ValueError, match="2 rows"):
        memory.push(np.zeros((3, 4)), np.arange(3))


def test_pair_objective_with_memory_adds_the_memory_term() -> None:
    rng = np.random.default_rng(6)
    y_pred = f32(rng.uniform(0.02, 0.98, (8, 48)))        # 4 originals, 4 copies
    weights = dict(kind="v1", neg_margin=0.0, hard_weight=0.5, neg_weight=2.0, balance_weight=1.0,
                   decorrelation_weight=1.0, quantisation_weight=0.3, weakest_bits_weight=0.5)
    plain = float(losses.PairObjective(**weights)(np.zeros((8, 1)), y_pred))
    # memory_batches=0 ignores y_true entirely: the old loss exactly.
    assert float(losses.PairObjective(**weights, memory_batches=0)(rng.normal(size=(8, 5)), y_pred)) == plain
    memory = NegativeMemory(batches=2, rows=8)
    row_ids = np.array([0, 1, 2, 3, 0, 1, 2, 3])
    objective = losses.PairObjective(**weights, memory_batches=2, memory_weight=1.5)
    # An empty memory: the old loss.
    assert float(objective(memory.targets(row_ids), y_pred)) == pytest.approx(plain, rel=1e-6)
    memory.push(f32(np.tanh(rng.normal(size=(8, 48)))), np.array([4, 5, 6, 7, 2, 9, 10, 11]))
    memory.push(f32(np.tanh(rng.normal(size=(8, 48)))), np.array([12, 13, 14, 15, 16, 17, 18, 19]))
    got = float(objective(memory.targets(row_ids), y_pred))
    extra = _numpy_memory_loss(2 * y_pred - 1, row_ids, memory.outputs, memory.ids, 0.0, 0.5)
    assert extra > 0
    assert got == pytest.approx(plain + 2.0 * 1.5 * extra, rel=1e-5)


# ----------------------------------------------------------- training step


def _tiny_config(**changes: object) -> TrainConfig:
    base = dataclasses.replace(get_config("v1"), name="tiny", batch_size=4, mixed_bfloat16=False)
    return dataclasses.replace(base, **changes)


def _tiny_batch() -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(3)
    a = rng.integers(0, 256, (4, 108, 108, 3), dtype=np.uint8)
    b = np.clip(a.astype(int) + rng.integers(-10, 11, a.shape), 0, 255).astype(np.uint8)
    return a, b


def test_training_steps_reduce_the_loss_and_change_weights() -> None:
    model = build_trainable(_tiny_config(learning_rate=1e-3))
    a, b = _tiny_batch()
    before = [np.array(w) for w in model.get_weights()]
    first = train_step(model, a, b)
    for _ in range(6):
        last = train_step(model, a, b)
    assert last < first
    changed = [not np.allclose(x, y) for x, y in zip(before, model.get_weights(), strict=True)]
    assert sum(changed) > len(changed) // 2


def test_training_step_with_a_memory_fills_it_with_the_batch_outputs() -> None:
    model = build_trainable(_tiny_config(memory_batches=2))
    memory = NegativeMemory(batches=2, rows=8)
    a, b = _tiny_batch()
    ids = np.array([3, 1, 4, 0])
    losses_seen = [train_step(model, a, b, memory, ids) for _ in range(3)]
    assert all(np.isfinite(losses_seen)) and memory.pushed == 3
    np.testing.assert_array_equal(memory.ids[8:], [3, 1, 4, 0, 3, 1, 4, 0])
    x = np.concatenate([a, b]).astype(np.float32)
    newest = memory.outputs[:8]                                 # the third push overwrote slot 0
    np.testing.assert_allclose(newest, 2 * np.asarray(model.predict_on_batch(x)) - 1, atol=1e-5)
    with pytest.raises(ValueError, match="source ids"):
        train_step(model, a, b, memory)


def test_distill_loss_holds_every_row_to_its_originals_code() -> None:
    """Loss ``distill``: y_true carries +-1 target codes; originals and copies are both held to them."""
    objective = losses.PairObjective(kind="distill", pos_margin=0.5, neg_weight=0.0, weakest_bits_weight=1.0,
                                        weakest_bits_k=4)
    targets = np.where(np.random.default_rng(2).random((4, 48)) < 0.5, -1.0, 1.0).astype(np.float32)
    y_true = np.concatenate([targets, targets])
    on_target = (y_true + 1) / 2                      # sigmoid outputs exactly at the target bits
    assert float(objective(y_true, on_target)) == 0.0
    off = on_target.copy()
    off[5, 9] = 1 - off[5, 9]                          # copy 1 flips one bit: hinge 1.5 on one of 8 x 48 bits
    assert float(objective(y_true, off)) == pytest.approx(1.5 / (8 * 48) + 1.5 / (8 * 4))
    collapsed = np.full_like(on_target, 0.5)           # outputs at the threshold cost the margin everywhere
    assert float(objective(y_true, collapsed)) == pytest.approx(0.5 + 0.5)
    # With negatives: the same targets, one copy identical to another original costs v1's negative term too.
    negatives = losses.PairObjective(kind="distill", pos_margin=0.5, neg_weight=1.0, hard_weight=0.0)
    same = on_target.copy()
    same[4:] = on_target[:4][[1, 0, 2, 3]]             # copies 0 and 1 swapped: each equals the other's original
    expected = float(losses.positive_margin_loss(f32(y_true), 2 * same - 1, 0.5)) + float(
        losses.negative_similarity_loss(f32(2 * on_target[:4] - 1), f32(2 * same[4:] - 1), 0.0, 0.0))
    assert float(negatives(y_true, same)) == pytest.approx(expected)
    assert float(negatives(y_true, same)) > float(negatives(y_true, on_target))


def test_distill_steps_pull_copies_onto_the_target_codes() -> None:
    model = build_trainable(_tiny_config(loss="distill", teacher="silse-v1f-r5", learning_rate=1e-3,
                                         weakest_bits_weight=1.0))
    a, b = _tiny_batch()
    targets = np.where(np.random.default_rng(5).random((4, 48)) < 0.5, -1.0, 1.0).astype(np.float32)
    first = train_step(model, a, b, targets=targets)
    for _ in range(8):
        last = train_step(model, a, b, targets=targets)
    assert last < 0.5 * first
    # Batch statistics as in the step (9 steps barely move the norms' running averages).
    bits = np.asarray(model(np.concatenate([a, b]).astype(np.float32), training=True), np.float32) > 0.5
    agreement = (bits == (np.concatenate([targets, targets]) > 0)).mean()
    assert agreement > 0.9  # random targets the network could not have produced on its own (~0.5 before)


def test_distillation_teacher_must_frame_as_the_student(standin_models: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from silse_spark.model import MODELS_DIR_ENV, PACKAGED_MODELS_DIR
    from silse_spark.training.train import distillation_teacher

    monkeypatch.setenv(MODELS_DIR_ENV, str(PACKAGED_MODELS_DIR))
    assert distillation_teacher(get_config("v1")) is None
    config = get_config("v1f-d1")
    assert distillation_teacher(config).version == config.teacher
    with pytest.raises(TrainConfigError, match="use the same framing"):
        distillation_teacher(dataclasses.replace(config, framing="moments"))


def test_checkpoint_round_trip_and_export(tmp_path: Path) -> None:
    config = _tiny_config()
    model = build_trainable(config)
    a, b = _tiny_batch()
    train_step(model, a, b)
    save_checkpoint(model, TrainState(step=1, pairs=8, seconds=1.0), config, tmp_path / "ck")
    restored = build_trainable(config)
    state = load_checkpoint(restored, tmp_path / "ck")
    assert state.step == 1 and state.pairs == 8
    for x, y in zip(model.get_weights(), restored.get_weights(), strict=True):
        np.testing.assert_array_equal(x, y)
    # Export: weights file + registry entry whose digest matches the file.
    model.save_weights(str(tmp_path / "m.weights.h5"))
    registry = register_model("tiny-r1", "v1", "m.weights.h5", "test", make_default=False, models_dir=tmp_path)
    assert registry["default"] == "tiny-r1"
    stored = json.loads((tmp_path / "registry.json").read_text())
    digest = hashlib.sha256((tmp_path / "m.weights.h5").read_bytes()).hexdigest()
    assert stored["models"]["tiny-r1"]["sha256"] == digest


def test_training_keeps_snapshots_of_earlier_steps(
    tmp_path: Path, demo_avatar_paths: list[Path], caplog: pytest.LogCaptureFixture,
) -> None:
    from silse_spark.training.train import float32_model, train

    canvases = np.stack([np.asarray(Image.open(p).convert("RGB").resize((128, 128))) for p in demo_avatar_paths[:8]])
    np.save(tmp_path / "train.npy", canvases)
    config = dataclasses.replace(_tiny_config(), checkpoint_minutes=1e-9)  # a checkpoint after every step too
    with caplog.at_level("INFO", logger="silse_spark.training.train"):
        model, state = train(config, tmp_path, tmp_path / "ck", minutes=None, steps=3, resume=False,
                             snapshot_minutes=1e-9)
    snapshots = sorted((tmp_path / "ck" / "snapshots").glob("step-*.weights.h5"))
    assert [p.name for p in snapshots] == [f"step-{k:06d}.weights.h5" for k in (1, 2, 3)]
    assert state.step == 3
    # Each step's checkpoint is written once: the end does not write the last one again.
    saved = [r.getMessage().split(",")[0] for r in caplog.records if r.getMessage().startswith("checkpoint: step")]
    assert saved == ["checkpoint: step 1", "checkpoint: step 2", "checkpoint: step 3"]
    assert json.loads((tmp_path / "ck" / "state.json").read_text())["state"]["step"] == 3
    first, last = float32_model(config, snapshots[0]), float32_model(config, snapshots[-1])
    for x, y in zip(last.get_weights(), model.get_weights(), strict=True):
        np.testing.assert_allclose(x, y)
    assert any(not np.allclose(x, y) for x, y in zip(first.get_weights(), last.get_weights(), strict=True))

    # A snapshot can be exported (train --export-only --snapshot STEP), and the config's framing is registered.
    from silse_spark.training.train import export

    framed = dataclasses.replace(config, framing="moments")
    (tmp_path / "models").mkdir()
    target = export(framed, tmp_path / "ck", "tiny-snap", "test", False, None, tmp_path / "models", snapshots[0])
    exported = float32_model(config, target)
    for x, y in zip(exported.get_weights(), first.get_weights(), strict=True):
        np.testing.assert_array_equal(x, y)
    entry = json.loads((tmp_path / "models" / "registry.json").read_text())["models"]["tiny-snap"]
    assert entry["framing"] == "moments"


def test_permute_output_bits_reorders_the_outputs() -> None:
    model = build_trainable(_tiny_config())
    x = _tiny_batch()[0].astype(np.float32)
    before = np.asarray(model.predict_on_batch(x))
    order = list(range(47, -1, -1))
    permute_output_bits(model, order)
    after = np.asarray(model.predict_on_batch(x))
    np.testing.assert_allclose(after, before[:, order], rtol=1e-5, atol=1e-6)
    with pytest.raises(ValueError, match="permutation"):
        permute_output_bits(model, [0] * 48)


# ---------------------------------------------------------------- configs


def test_named_configs_are_valid_and_seed_follows_the_design() -> None:
    assert set(CONFIGS) >= {"seed", "v1"}
    seed = get_config("seed")
    assert (seed.architecture, seed.loss) == ("seed", "seed")
    assert set(seed.families) == {"rotation", "shift_h", "shift_w", "channel_scale", "combined"}
    # The negative memory is off everywhere but v1-r5, which otherwise keeps v1-r2's loss from the shipped model.
    assert [name for name, c in CONFIGS.items() if c.memory_batches] == ["v1-r5"]
    r5, r2 = get_config("v1-r5"), get_config("v1-r2")
    assert (r5.init_weights, r5.memory_batches, r5.learning_rate) == ("silse-v1", 16, 2e-4)
    assert dataclasses.replace(r5, name="v1-r2", memory_batches=0, learning_rate=r2.learning_rate, seed=r2.seed,
                               description="") == r2


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"architecture": "resnet"}, "architecture 'resnet'"),
        ({"loss": "triplet"}, "loss 'triplet'"),
        ({"families": ("rotation", "sepia")}, "sepia"),
        ({"batch_size": 1}, "batch_size 1"),
        ({"learning_rate": 0.0}, "learning_rate"),
        ({"balance_weight": -1.0}, "balance_weight"),
        ({"anchor_alter_prob": 1.5}, "anchor_alter_prob"),
        ({"init_from": "seed"}, "use --resume"),
        ({"init_from": "v1", "init_weights": "silse-v1"}, "at most one of init_from"),
        ({"init_weights": "silse-v1", "init_trunk": "silse-v1"}, "at most one of init_from"),
        ({"framing": "centre"}, "framing 'centre'"),
        ({"memory_batches": -1}, "memory_batches -1"),
        ({"memory_batches": 4}, "needs loss 'v1'"),
        ({"memory_weight": -0.5}, "memory_weight"),
        ({"loss": "distill"}, "needs a teacher"),
        ({"teacher": "silse-v1f-r5"}, "needs a teacher"),
    ],
)
def test_config_validation_says_what_is_wrong(changes: dict[str, object], message: str) -> None:
    with pytest.raises(TrainConfigError, match=message):
        dataclasses.replace(get_config("seed"), **changes)


def test_init_weights_starts_from_the_shipped_model_of_the_same_architecture(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from silse_spark.model import MODELS_DIR_ENV, load_model
    from silse_spark.training.train import train

    monkeypatch.delenv(MODELS_DIR_ENV, raising=False)  # the packaged models, not a test stand-in

    data = tmp_path / "data"
    data.mkdir()
    np.save(data / "train.npy", np.random.default_rng(0).integers(0, 256, (8, 128, 128, 3), dtype=np.uint8))
    config = dataclasses.replace(get_config("v1-r2"), batch_size=4, learning_rate=1e-9, mixed_bfloat16=False)
    model, state = train(config, data, tmp_path / "ck", minutes=None, steps=1, resume=False)
    assert state.step == 1
    shipped = load_model("silse-v1")
    kernel, shipped_kernel = model.get_layer("code").get_weights()[0], shipped.get_layer("code").get_weights()[0]
    np.testing.assert_allclose(kernel, shipped_kernel, atol=1e-6)  # one step at lr 1e-9 moves nothing visible
    wrong = dataclasses.replace(config, architecture="v2")
    with pytest.raises(TrainConfigError, match="same architecture"):
        train(wrong, data, tmp_path / "ck2", minutes=None, steps=1, resume=False)


def test_init_trunk_copies_the_shared_layers_of_a_shipped_model(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from silse_spark.model import MODELS_DIR_ENV, build_model, load_model
    from silse_spark.training.train import copy_matching_layers

    monkeypatch.delenv(MODELS_DIR_ENV, raising=False)  # the packaged models, not a test stand-in
    shipped = load_model("silse-v1")
    pooled = build_model("v1p")
    fresh_fc = pooled.get_layer("fc_256").get_weights()[0].copy()
    copied = copy_matching_layers("silse-v1", pooled)
    # The whole convolutional trunk (with its batch norms) comes over; fc_256 (384 inputs here, 9,408 in
    # v1) cannot and stays as initialised.
    assert {"stem", "stem_bn", "conv_6", "conv_6_bn", "sep_5"} <= set(copied)
    assert "fc_256" not in copied
    np.testing.assert_array_equal(pooled.get_layer("fc_256").get_weights()[0], fresh_fc)
    for name in ("stem", "sep_5", "conv_6_bn"):
        for got, want in zip(pooled.get_layer(name).get_weights(), shipped.get_layer(name).get_weights()):
            np.testing.assert_array_equal(got, want)
    with pytest.raises(TrainConfigError, match="shares no trunk|sharing its trunk"):
        copy_matching_layers("silse-v1", build_model("seed"))


def test_unknown_config_name_lists_the_known_ones() -> None:
    with pytest.raises(TrainConfigError, match="expected one of"):
        get_config("v9")


# ----------------------------------------------------------- corpus helpers


def _drawing(colour: str, box: tuple[int, int, int, int]) -> bytes:
    img = Image.new("RGBA", (96, 96), (0, 0, 0, 0))
    ImageDraw.Draw(img).ellipse(box, fill=colour)
    return encode(img)


def test_near_blank_detection() -> None:
    assert is_near_blank(np.full((128, 128, 3), 255, np.uint8))
    speck = np.full((128, 128, 3), 255, np.uint8)
    speck[:3, :3] = 0
    assert is_near_blank(speck)
    drawn = Image.open(io.BytesIO(_drawing("red", (10, 10, 80, 80)))).convert("RGB")
    assert not is_near_blank(np.asarray(drawn))


def test_process_bytes_uses_the_production_decoder_identity() -> None:
    data = _drawing("blue", (5, 20, 90, 70))
    proc = process_bytes(data)
    assert proc.status == "ok"
    assert proc.canvas is not None and proc.canvas.shape == (128, 128, 3)
    assert proc.canvas[0, 0].tolist() == [255, 255, 255]  # transparent corner on white
    pixels = decode_avatar(data).pixels
    assert pixels is not None
    assert proc.pixel_sha256 == hashlib.sha256(pixels.tobytes()).hexdigest()
    assert proc.file_sha256 == hashlib.sha256(data).hexdigest()
    assert process_bytes(encode(Image.new("RGB", (64, 64), "white"))).status == "near_blank"
    assert process_bytes(b"not an image").status == "decode_error"


def test_select_drops_duplicates_blanks_and_demo_matches() -> None:
    red = _drawing("red", (10, 10, 80, 80))
    green = _drawing("green", (30, 5, 60, 90))
    demo_like = _drawing("navy", (0, 40, 95, 60))
    files = [red, red, green, encode(Image.new("RGB", (32, 32), "white")), demo_like]
    processed = [process_bytes(f) for f in files]
    cands = [Candidate(f"c{i}", "test", f"g{i}", Path(f"c{i}.png")) for i in range(len(files))]
    demo = process_bytes(demo_like)
    kept, reasons = select(cands, processed, {demo.pixel_sha256}, [demo.phash])
    assert kept == [0, 2]
    assert reasons == {"duplicate_content": 1, "near_blank": 1, "demo_pixel_match": 1}
    # pHash radius: a demo hash one bit away from the candidate's also excludes it.
    kept, reasons = select(cands[2:3], processed[2:3], set(), [processed[2].phash ^ 1])
    assert kept == [] and reasons == {"demo_phash_match": 1}


def test_hamming64_and_split_are_deterministic() -> None:
    assert hamming64(np.array([0, 7], dtype=np.uint64), 0).tolist() == [0, 3]
    splits = [split_for("dicebear", f"lorelei__{i}") for i in range(2000)]
    assert splits == [split_for("dicebear", f"lorelei__{i}") for i in range(2000)]
    assert 0.03 < splits.count("val") / len(splits) < 0.09


# ------------------------------------------------------------- validation


def test_validation_metrics_on_known_codes() -> None:
    rng = np.random.default_rng(4)
    assert effective_bits(rng.integers(0, 2, (4000, 48))) > 45
    assert effective_bits(np.repeat(rng.integers(0, 2, (100, 1)), 48, axis=1)) == pytest.approx(1.0)
    bits = np.zeros((4, 48), np.uint8)
    bits[2, 0] = 1
    bits[3, :10] = 1
    rates = false_match_rates(bits)
    assert rates["pairs"] == 6
    assert rates["false_match_rate_exact"] == pytest.approx(1 / 6)       # rows 0 and 1
    assert rates["false_match_rate_within_2"] == pytest.approx(3 / 6)    # + (0,2), (1,2)
    assert rates["distinct_codes"] == 3
