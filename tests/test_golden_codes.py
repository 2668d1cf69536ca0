"""Golden codes: a dependency upgrade that changes twin values is caught here, not in production."""

from __future__ import annotations

import json
from importlib.metadata import version
from pathlib import Path

import numpy as np
import pytest

from silse_spark.codes import twin_values_from_outputs
from silse_spark.decode import decode_avatar
from silse_spark.model import PACKAGED_MODELS_DIR, TwinHasher, available_model_versions, get_model_spec

DATA = Path(__file__).resolve().parent / "data"
GOLDEN = json.loads((DATA / "golden_codes.json").read_text())


@pytest.mark.parametrize("model_version", sorted(GOLDEN["models"]))
def test_shipped_models_reproduce_their_golden_codes(model_version: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SILSE_MODELS_DIR", str(PACKAGED_MODELS_DIR))
    assert model_version in available_model_versions(), f"{model_version} has golden codes but is not shipped"
    expected = GOLDEN["models"][model_version]
    framing = get_model_spec(model_version).framing  # the version's own preprocessing, as the job decodes
    pixels = np.stack([decode_avatar((DATA / "hostile" / name).read_bytes(), framing=framing).pixels
                       for name in expected])
    actual = dict(zip(expected, twin_values_from_outputs(TwinHasher(model_version).outputs(pixels))[0]))
    now = {pkg: version(pkg) for pkg in GOLDEN["versions"]}
    assert actual == expected, (
        f"twin values changed: recorded with {GOLDEN['versions']}, now {now}. A changed code splits clusters; "
        "pin the old versions, or re-hash deliberately and rerun scripts/update_golden_codes.py"
    )


def test_every_shipped_model_has_golden_codes(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SILSE_MODELS_DIR", str(PACKAGED_MODELS_DIR))
    assert set(available_model_versions()) <= set(GOLDEN["models"])
