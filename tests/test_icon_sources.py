"""scripts/build_icon_sources.py (make eval-icons' held-out suite) on synthetic icon themes."""

from __future__ import annotations

import importlib.util
import shutil
from pathlib import Path
from types import ModuleType

import numpy as np
import pytest
from PIL import Image, ImageDraw

SCRIPT = Path(__file__).resolve().parents[1] / "scripts" / "build_icon_sources.py"


@pytest.fixture(scope="module")
def icons() -> ModuleType:
    spec = importlib.util.spec_from_file_location("build_icon_sources", SCRIPT)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _icon(path: Path, shape: int, colour: tuple[int, int, int]) -> None:
    """A transparent 256x256 PNG with one drawn shape."""
    img = Image.new("RGBA", (256, 256), (0, 0, 0, 0))
    draw = ImageDraw.Draw(img)
    box = (40 + 8 * (shape % 5), 30 + 11 * (shape // 5), 200 - 9 * (shape % 3), 220 - 7 * (shape % 4))
    [draw.ellipse, draw.rectangle, draw.pieslice][shape % 3](
        box, fill=(*colour, 255), **({"start": 30 * shape, "end": 30 * shape + 250} if shape % 3 == 2 else {}))
    draw.line((0, 255 - 20 * shape, 255, 20 * shape), fill=(255 - colour[0], 40, 90, 255), width=12)
    path.parent.mkdir(parents=True, exist_ok=True)
    img.save(path)


def test_flatten_lays_the_icon_on_its_background(icons: ModuleType, tmp_path: Path) -> None:
    path = tmp_path / "a.png"
    img = Image.new("RGBA", (64, 64), (0, 0, 0, 0))
    img.paste((200, 10, 10, 255), (16, 16, 48, 48))
    img.save(path)
    pixels = icons.flatten(path, 32, (0, 128, 255))
    assert pixels.shape == (32, 32, 3) and pixels.dtype == np.uint8
    assert tuple(pixels[1, 1]) == (0, 128, 255)  # transparent corner -> background, not black
    assert tuple(pixels[16, 16]) == (200, 10, 10)


def test_build_keeps_distinct_drawings_only_and_is_reproducible(
    icons: ModuleType, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    tango, gnome, moka = tmp_path / "Tango" / "scalable", tmp_path / "gnome" / "256x256", tmp_path / "Moka" / "256x256"
    tango.mkdir(parents=True)
    rng = np.random.default_rng(3)
    for i in range(12):
        _icon((gnome if i % 2 else moka) / "apps" / f"icon{i}.png", i, tuple(int(v) for v in rng.integers(0, 200, 3)))
    # A copy of icon0 under another name (the themes' aliases and near-copies) and a blank icon.
    (moka / "places").mkdir()
    (moka / "places" / "copy.png").write_bytes((moka / "apps" / "icon0.png").read_bytes())
    Image.new("RGBA", (256, 256), (0, 0, 0, 0)).save(moka / "places" / "blank.png")
    (gnome / "apps" / "alias.png").symlink_to(gnome / "apps" / "icon1.png")
    monkeypatch.setitem(icons.THEME_SETS, "a", (("tango", tango, "svg"), ("gnome", gnome, "png"), ("moka", moka, "png")))

    written, distinct = icons.build(tmp_path / "out", count=8, size=64, seed=5)
    files = sorted((tmp_path / "out").glob("*.png"))
    assert (written, len(files)) == (8, 8)
    assert distinct == 12, "the copy, the blank icon and the symbolic link are not distinct drawings"
    assert not any("copy" in f.name or "blank" in f.name or "alias" in f.name for f in files)
    assert all(Image.open(f).size == (64, 64) and Image.open(f).mode == "RGB" for f in files)
    first = {f.name: f.read_bytes() for f in files}

    icons.build(tmp_path / "out", count=8, size=64, seed=5)
    assert {f.name: f.read_bytes() for f in sorted((tmp_path / "out").glob("*.png"))} == first


def test_build_names_missing_themes(icons: ModuleType, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(icons.THEME_SETS, "b", (("numix", tmp_path / "nowhere", "svg"),))
    with pytest.raises(SystemExit, match="nowhere.*install numix-icon-theme-circle"):
        icons.build(tmp_path / "out", count=8, size=64, seed=5, theme_set="b")


@pytest.mark.skipif(shutil.which("dpkg") is None, reason="dpkg is Debian's package tool")
def test_missing_debian_packages_are_named_with_the_command_that_installs_them() -> None:
    from silse_spark.training.data import ensure_debian_packages

    with pytest.raises(SystemExit, match=r"missing Debian packages \['silse-no-such-package'\]; "
                                         r"run: apt-get install -y silse-no-such-package"):
        ensure_debian_packages(["silse-no-such-package"], install=False)


def test_every_set_names_the_packages_it_reads(icons: ModuleType) -> None:
    assert set(icons.PACKAGES) == set(icons.THEME_SETS)
    for name, themes in icons.THEME_SETS.items():
        # build() names the first three packages when a theme folder is missing: one per theme, in order.
        assert len(icons.PACKAGES[name]) == len(themes) + 1, name
        if any(kind == "svg" for _, _, kind in themes):
            assert "librsvg2-bin" in icons.PACKAGES[name], f"set {name} renders SVGs with rsvg-convert"
