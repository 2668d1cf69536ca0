"""Record the exact twin values of a few committed images for every shipped model.

    python scripts/update_golden_codes.py

tests/test_golden_codes.py then fails if a dependency upgrade (Pillow's
decoder or resampling, TensorFlow/Keras numerics) changes any code: such a
change would split every existing cluster in production. Rerun this script
only deliberately, together with a re-hash plan.
"""

from __future__ import annotations

import json
from importlib.metadata import version
from pathlib import Path

import numpy as np

from silse_spark.codes import twin_values_from_outputs
from silse_spark.decode import decode_avatar
from silse_spark.model import available_model_versions, cached_hasher, get_model_spec

REPO = Path(__file__).resolve().parents[1]
IMAGES = ["rgb.png", "alpha.png", "palette_transparent.gif", "exif_rotated.jpg", "cmyk.jpg", "grey16.png",
          "animated_webp.webp", "wide.png"]
GOLDEN = REPO / "tests" / "data" / "golden_codes.json"


def main() -> None:
    files = [(REPO / "tests" / "data" / "hostile" / n).read_bytes() for n in IMAGES]
    record = {
        "versions": {pkg: version(pkg) for pkg in ("pillow", "keras", "tensorflow-cpu", "numpy", "numba")},
        "models": {},
    }
    for model_version in available_model_versions():
        framing = get_model_spec(model_version).framing  # each version decodes as the job decodes for it
        pixels = np.stack([decode_avatar(f, framing=framing).pixels for f in files])
        codes, _ = twin_values_from_outputs(cached_hasher(model_version).outputs(pixels))
        record["models"][model_version] = dict(zip(IMAGES, codes))
    GOLDEN.write_text(json.dumps(record, indent=2) + "\n")
    print(json.dumps(record, indent=2))


if __name__ == "__main__":
    main()
