"""What a GPU machine's training run needs: the corpus pack (lossless, checked) and pairs made in several processes."""

from __future__ import annotations

import itertools
import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from PIL import Image

from silse_spark.training.pack import CARRY_MIB, MARGIN_MIB, PackError, carry_room_mib, main, pack, unpack
from silse_spark.training.pairs import PairBatches, parallel_batches, worker_seed


@pytest.fixture(scope="module")
def corpus(tmp_path_factory: pytest.TempPathFactory, demo_avatar_paths: list[Path]) -> Path:
    """A train.npy of the demo avatars as 128x128 canvases."""
    folder = tmp_path_factory.mktemp("corpus")
    canvases = np.stack([np.asarray(Image.open(p).convert("RGB").resize((128, 128))) for p in demo_avatar_paths])
    np.save(folder / "train.npy", canvases)
    return folder


def test_pack_round_trips_every_pixel(corpus: Path, tmp_path: Path) -> None:
    canvases = np.load(corpus / "train.npy")
    summary = pack(corpus, tmp_path / "p.npz", max_mib=16)
    assert summary["images"] == len(canvases)  # all fit: stored in corpus order
    unpack(tmp_path / "p.npz", tmp_path / "out")
    np.testing.assert_array_equal(np.load(tmp_path / "out" / "train.npy"), canvases)


def test_pack_budget_and_disjoint_parts(corpus: Path, tmp_path: Path) -> None:
    canvases = np.load(corpus / "train.npy")
    small = pack(corpus, tmp_path / "small.npz", max_mib=0.05)
    assert 0 < small["images"] < len(canvases) and small["image_bytes"] <= 0.05 * 2**20
    parts = [tmp_path / f"part{k}.npz" for k in range(3)]
    counts = [pack(corpus, path, max_mib=16, part=k, parts=3)["images"] for k, path in enumerate(parts)]
    assert sum(counts) == len(canvases)
    unpack(parts, tmp_path / "all")
    together = np.load(tmp_path / "all" / "train.npy")
    # Every canvas exactly once across the parts.
    key = {c.tobytes() for c in canvases}
    assert len(together) == len(canvases) and {c.tobytes() for c in together} == key


def test_default_budget_is_what_a_device_call_has_left(corpus: Path, tmp_path: Path,
                                                      monkeypatch: pytest.MonkeyPatch,
                                                      capsys: pytest.CaptureFixture[str]) -> None:
    import subprocess

    repo = tmp_path / "repo"
    (repo / "work" / "device").mkdir(parents=True)
    (repo / "weights.bin").write_bytes(bytes(2**20))  # 1 MiB tracked
    (repo / "untracked.bin").write_bytes(bytes(2**20))  # neither tracked nor carried: not counted
    (repo / ".whl").mkdir()
    (repo / ".whl" / "keras.whl").write_bytes(bytes(2**19))  # 0.5 MiB carried
    (repo / "work" / "device" / "old-pack.npz").write_bytes(bytes(2**18))  # 0.25 MiB, about to be rewritten
    subprocess.run(["git", "init", "-q", str(repo)], check=True)
    subprocess.run(["git", "-C", str(repo), "add", "weights.bin"], check=True)
    room = carry_room_mib(repo)
    assert room == pytest.approx(CARRY_MIB - 1 - 0.5 - 0.25 - MARGIN_MIB)
    assert carry_room_mib(repo, exclude=repo / "work" / "device" / "old-pack.npz") == pytest.approx(room + 0.25)
    assert carry_room_mib(tmp_path / "elsewhere") is None
    # The command fills that room by default, and outside a checkout asks for --max-mib.
    monkeypatch.chdir(repo)
    assert main(["pack", "--data", str(corpus), "--output", "work/device/old-pack.npz"]) == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["images"] == len(np.load(corpus / "train.npy"))  # every demo avatar fits in ~62 MiB
    monkeypatch.chdir(tmp_path)
    assert main(["pack", "--data", str(corpus), "--output", "p.npz"]) == 2
    assert "--max-mib" in capsys.readouterr().err


def test_damaged_or_foreign_packs_are_refused(corpus: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
                                              ) -> None:
    pack(corpus, tmp_path / "p.npz", max_mib=0.2)
    with np.load(tmp_path / "p.npz") as z:
        parts = {k: z[k] for k in z.files}
    blob = parts["blob"].copy()
    blob[len(blob) // 2] ^= 0xFF  # one flipped byte inside a lossless stream
    np.savez(tmp_path / "bad.npz", **{**parts, "blob": blob})
    with pytest.raises(PackError, match="damaged"):
        unpack(tmp_path / "bad.npz", tmp_path / "bad")
    np.savez(tmp_path / "foreign.npz", x=np.zeros(3))
    with pytest.raises(PackError, match="not a training pack"):
        unpack(tmp_path / "foreign.npz", tmp_path / "foreign")
    assert main(["unpack", "--pack", str(tmp_path / "missing.npz"), "--data", str(tmp_path / "m")]) == 2
    assert "not found" in capsys.readouterr().err
    with pytest.raises(PackError, match="part 3 of 3"):
        pack(corpus, tmp_path / "q.npz", part=3, parts=3)


def test_parallel_pairs_are_the_workers_streams_in_turn(corpus: Path) -> None:
    options: dict[str, Any] = dict(families=["rotation", "channel_scale"], batch_size=4, framing="moments-bleed-white")
    canvases = np.load(corpus / "train.npy", mmap_mode="r")
    stream = parallel_batches(corpus / "train.npy", 2, seed=11, **options)
    got = list(itertools.islice(stream, 4))
    stream.close()
    own = [iter(PairBatches(canvases, seed=worker_seed(11, k), **options)) for k in range(2)]
    expected = [next(own[i % 2]) for i in range(4)]
    for (a, b), (ea, eb) in zip(got, expected, strict=True):
        np.testing.assert_array_equal(a, ea)
        np.testing.assert_array_equal(b, eb)
    assert not np.array_equal(got[0][0], got[1][0])  # the two workers' streams differ


def test_a_failing_pair_worker_is_reported(corpus: Path, tmp_path: Path) -> None:
    stream = parallel_batches(tmp_path / "missing.npy", 1, seed=0, families=["rotation"], batch_size=4)
    with pytest.raises(RuntimeError, match="pair worker 0 exited"):
        next(stream)


def test_training_with_pair_workers_steps_and_checkpoints(corpus: Path, tmp_path: Path) -> None:
    import dataclasses

    from silse_spark.training.train import get_config, train

    config = dataclasses.replace(get_config("v1"), name="tiny", batch_size=4, mixed_bfloat16=False)
    model, state = train(config, corpus, tmp_path / "ck", minutes=None, steps=2, resume=False, workers=2)
    assert state.step == 2 and state.pairs == 2 * 2 * config.batch_size
    assert (tmp_path / "ck" / "model.weights.h5").is_file() and (tmp_path / "ck" / "state.json").is_file()
