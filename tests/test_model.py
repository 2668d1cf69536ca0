"""The seed architecture, weights integrity and batched inference."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from silse_spark import model as model_mod
from silse_spark.model import ModelIntegrityError, UnknownModelError


def test_seed_architecture_matches_the_design() -> None:
    m = model_mod.build_model("seed")
    assert m.input_shape == (None, 108, 108, 3)
    assert m.output_shape == (None, 48)
    assert m.count_params() == 2_092_976
    non_trainable = sum(int(np.prod(w.shape)) for w in m.non_trainable_weights)
    assert non_trainable == 640
    shapes = {layer.name: layer.output.shape for layer in m.layers}
    assert shapes["conv2d_3"] == (None, 54, 54, 64)
    assert shapes["conv2d_6"] == (None, 27, 27, 128)
    assert shapes["conv2d_9"] == (None, 14, 14, 128)
    assert shapes["flatten_layer"] == (None, 25088)
    assert [layer.name for layer in m.layers if "batch_norm" in layer.name] == [
        "batch_normalization_1", "batch_normalization_2", "batch_normalization_3"
    ]
    assert not any(type(layer).__name__ == "Lambda" for layer in m.layers)


@pytest.mark.parametrize("architecture", sorted(model_mod.ARCHITECTURES))
def test_every_architecture_keeps_the_input_and_code_contract(architecture: str) -> None:
    m = model_mod.build_model(architecture)
    assert m.input_shape == (None, 108, 108, 3)
    assert m.output_shape == (None, 48)
    assert m.get_layer("color_preprocessing") is not None  # scaling inside the model, not in the caller
    assert not any(type(layer).__name__ == "Lambda" for layer in m.layers)
    out = np.asarray(m(np.full((2, 108, 108, 3), 200.0, np.float32), training=False))
    assert out.shape == (2, 48) and ((out >= 0) & (out <= 1)).all()


def test_preprocessing_scales_pixels_to_minus_one_one() -> None:
    m = model_mod.build_model("seed")
    layer = m.get_layer("color_preprocessing")
    out = np.asarray(layer(np.array([[[[0.0, 127.5, 255.0]]]], dtype=np.float32)))
    assert np.allclose(out, [-1.0, 0.0, 1.0])


def test_unknown_architecture_and_version_fail_clearly(standin_models: Path) -> None:
    with pytest.raises(UnknownModelError, match="unknown architecture"):
        model_mod.build_model("nope")
    with pytest.raises(UnknownModelError, match="available"):
        model_mod.get_model_spec("no-such-version")


def test_weights_round_trip_and_checksum(standin_models: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    hasher = model_mod.TwinHasher()
    pixels = np.random.default_rng(1).integers(0, 256, (3, 108, 108, 3), dtype=np.uint8)
    first = hasher.outputs(pixels)
    assert first.shape == (3, 48) and ((first > 0) & (first < 1)).all()
    np.testing.assert_allclose(model_mod.TwinHasher().outputs(pixels), first, rtol=1e-5, atol=1e-6)

    # A tampered copy of the weights is refused, naming both digests.
    tampered = tmp_path / "models"
    shutil.copytree(standin_models, tampered)
    weights = next(tampered.glob("*.weights.h5"))
    weights.write_bytes(weights.read_bytes() + b"\0")
    monkeypatch.setenv(model_mod.MODELS_DIR_ENV, str(tampered))
    spec = model_mod.get_model_spec()
    with pytest.raises(ModelIntegrityError, match=f"expected {spec.sha256}, got [0-9a-f]{{64}}"):
        model_mod.load_model()
    weights.unlink()
    with pytest.raises(ModelIntegrityError, match="not found"):
        model_mod.load_model()


def test_wrong_input_shape_is_rejected(standin_models: Path) -> None:
    with pytest.raises(ValueError, match=r"\(n, 108, 108, 3\)"):
        model_mod.cached_hasher().outputs(np.zeros((1, 64, 64, 3), dtype=np.uint8))


def test_shipped_registry_is_consistent() -> None:
    registry = json.loads((model_mod.PACKAGED_MODELS_DIR / "registry.json").read_text())
    assert registry["default"] in registry["models"]
    for version, entry in registry["models"].items():
        assert entry["architecture"] in model_mod.ARCHITECTURES, version
        path = model_mod.PACKAGED_MODELS_DIR / entry["weights"]
        assert model_mod.file_sha256(path) == entry["sha256"], f"{version}: weights do not match registry"


def _demo_pixels(count: int) -> np.ndarray:
    from conftest import DEMO_AVATARS

    from silse_spark.decode import decode_avatar

    paths = sorted(DEMO_AVATARS.rglob("*.png"))[:count]
    return np.stack([decode_avatar(p.read_bytes()).pixels for p in paths])


@pytest.mark.parametrize("architecture", sorted(model_mod.ARCHITECTURES))
def test_folded_batch_norms_give_the_same_outputs(architecture: str) -> None:
    """The job's inference copy (batch norms folded into convolutions) computes what the model does."""
    import keras

    m = model_mod.build_model(architecture)
    rng = np.random.default_rng(3)
    for layer in m.layers:  # trained-looking statistics, so that folding has something to get wrong
        if isinstance(layer, keras.layers.BatchNormalization):
            gamma, beta, mean, var = layer.get_weights()
            layer.set_weights([rng.uniform(0.5, 2.0, gamma.shape), rng.normal(0, 0.5, beta.shape),
                               rng.normal(0, 0.5, mean.shape), rng.uniform(0.5, 2.0, var.shape)])
    folded = model_mod.fold_batch_norms(m)
    norms = [layer.name for layer in m.layers if isinstance(layer, keras.layers.BatchNormalization)]
    kept = [layer.name for layer in folded.layers if isinstance(layer, keras.layers.BatchNormalization)]
    if architecture == "seed":
        assert kept == norms  # after a ReLU: folding across zero padding would not be exact
    else:
        assert norms and not kept
    pixels = _demo_pixels(16).astype(np.float32)
    expected = np.asarray(m.predict_on_batch(pixels))
    actual = np.asarray(model_mod.inference_function(folded)(pixels))
    np.testing.assert_allclose(actual, expected, rtol=1e-4, atol=2e-5)


def test_v1aa_is_v1_with_fixed_blurs_before_its_inner_strided_convolutions(monkeypatch: pytest.MonkeyPatch) -> None:
    """v1aa holds v1's trainable layers, by name and shape, and three untrained binomial blurs; with the blurs
    turned into identity filters it computes exactly what v1 does with the same weights."""
    from silse_spark.model import MODELS_DIR_ENV
    from silse_spark.training.train import copy_matching_layers

    monkeypatch.delenv(MODELS_DIR_ENV, raising=False)  # the packaged models, not a test stand-in
    aa, v1 = model_mod.build_model("v1aa"), model_mod.load_model("silse-v1f-r10")
    blurs = [layer for layer in aa.layers if layer.name.startswith("blur_")]
    assert [layer.name for layer in blurs] == ["blur_conv_2", "blur_conv_4", "blur_conv_6"]
    assert not any(layer.trainable_weights for layer in blurs)
    assert sum(int(np.prod(w.shape)) for w in aa.trainable_weights) == v1.count_params() - sum(
        int(np.prod(w.shape)) for w in v1.non_trainable_weights)
    kernel = blurs[2].get_weights()[0]  # before conv_6: sep_5's 128 channels
    assert kernel.shape == (3, 3, 128, 1)
    np.testing.assert_array_equal(kernel[:, :, 7, 0], np.array([[1, 2, 1], [2, 4, 2], [1, 2, 1]]) / 16)
    copied = copy_matching_layers("silse-v1f-r10", aa)
    assert set(copied) == {layer.name for layer in v1.layers if layer.weights}
    pixels = _demo_pixels(8).astype(np.float32)
    plain = np.asarray(v1.predict_on_batch(pixels))
    blurred = np.asarray(aa.predict_on_batch(pixels))
    for layer in blurs:
        delta = np.zeros_like(layer.get_weights()[0])
        delta[1, 1] = 1.0
        layer.set_weights([delta])
    np.testing.assert_allclose(np.asarray(aa.predict_on_batch(pixels)), plain, rtol=1e-5, atol=1e-6)
    assert np.abs(blurred - plain).max() > 1e-3  # the blur does something


def test_hasher_runs_the_folded_model_with_the_shipped_weights(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(model_mod.MODELS_DIR_ENV, str(model_mod.PACKAGED_MODELS_DIR))
    hasher = model_mod.TwinHasher("silse-v1", batch_size=8)
    pixels = _demo_pixels(20)  # 8 + 8 + a padded batch of 4
    expected = np.asarray(hasher.model.predict_on_batch(pixels.astype(np.float32)))
    np.testing.assert_allclose(hasher.outputs(pixels), expected, rtol=1e-4, atol=2e-5)


def test_mirror_views_give_a_mirror_image_its_originals_code(monkeypatch: pytest.MonkeyPatch,
                                                             demo_avatar_paths: list[Path]) -> None:
    """silse-v1f-r8 averages the network over its input and the input's mirror image (silse-v1f-r5's weights)."""
    import io

    from PIL import Image

    from silse_spark.codes import twin_values_from_outputs
    from silse_spark.decode import decode_avatar

    monkeypatch.setenv(model_mod.MODELS_DIR_ENV, str(model_mod.PACKAGED_MODELS_DIR))
    spec = model_mod.get_model_spec("silse-v1f-r8")
    assert spec.views == ("identity", "hflip") and spec.sha256 == model_mod.get_model_spec("silse-v1f-r5").sha256
    views, plain = model_mod.TwinHasher("silse-v1f-r8", batch_size=16), model_mod.TwinHasher("silse-v1f-r5", 16)
    pixels = _demo_pixels(20)
    flipped = np.ascontiguousarray(pixels[:, :, ::-1])
    np.testing.assert_array_equal(views.outputs(flipped), views.outputs(pixels))
    np.testing.assert_allclose(views.outputs(pixels), (plain.outputs(pixels) + plain.outputs(flipped)) / 2,
                               rtol=1e-5, atol=1e-6)

    # End to end as the job decodes: mirrored files (re-encoded, framed on their own) keep their codes.
    def mirrored(path: Path) -> bytes:
        out = io.BytesIO()
        Image.open(path).transpose(Image.Transpose.FLIP_LEFT_RIGHT).save(out, "PNG")
        return out.getvalue()

    def codes(hasher: model_mod.TwinHasher, files: list[bytes]) -> list[str]:
        decoded = np.stack([decode_avatar(f, framing=spec.framing).pixels for f in files])
        return twin_values_from_outputs(hasher.outputs(decoded))[0]

    originals = [p.read_bytes() for p in demo_avatar_paths]
    mirrors = [mirrored(p) for p in demo_avatar_paths]
    ours = codes(views, originals)
    assert ours == codes(views, mirrors)
    assert len(set(ours)) == len(ours)  # still one code per distinct avatar
    kept = sum(a == b for a, b in zip(codes(plain, originals), codes(plain, mirrors)))
    assert kept < len(originals) / 2  # without the views most mirror images get another code


@pytest.mark.parametrize("views", [[], ["identity", "identity"], ["vflip"]])
def test_registry_views_are_checked(standin_models: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                    views: list[str]) -> None:
    directory = tmp_path / "models"
    shutil.copytree(standin_models, directory)
    registry = json.loads((directory / "registry.json").read_text())
    registry["models"][registry["default"]]["views"] = views
    (directory / "registry.json").write_text(json.dumps(registry))
    monkeypatch.setenv(model_mod.MODELS_DIR_ENV, str(directory))
    with pytest.raises(UnknownModelError, match=r"asks for views .*expected distinct names from \('identity', 'hflip'\)"):
        model_mod.get_model_spec()


def test_views_average_alike_outside_tensorflow(monkeypatch: pytest.MonkeyPatch) -> None:
    """The ``predict_on_batch`` path (other Keras backends) averages the views as the compiled one does."""
    import keras

    m = model_mod.build_model("v1")
    pixels = _demo_pixels(6)
    compiled = np.asarray(model_mod.inference_function(m, ("identity", "hflip"))(pixels))
    monkeypatch.setattr(keras.backend, "backend", lambda: "jax")
    generic = model_mod.inference_function(m, ("identity", "hflip"))(pixels)
    np.testing.assert_allclose(generic, compiled, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(generic, model_mod.inference_function(m)(pixels[:, :, ::-1]) / 2
                               + model_mod.inference_function(m)(pixels) / 2, rtol=1e-5, atol=1e-6)
