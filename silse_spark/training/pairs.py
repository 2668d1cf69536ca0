"""On-the-fly training batches: (original, altered copy) rows from the 128x128 corpus.

Each batch row ``i`` holds an image (``a``) and an altered copy of the same
image (``b``), both resized to the model's 108x108 input with the production
resampling (bilinear). Variations run on the 128x128 canvas, before the
resize, as they would on an uploaded file. Rows come from distinct corpus
images, so row ``i``'s original and row ``j``'s copy are different images.
With ``with_ids``, each batch also carries the corpus index of every row (the
source image), so that outputs kept from earlier batches can be told apart
from the same image's (:class:`silse_spark.training.train.NegativeMemory`).
"""

from __future__ import annotations

import logging
import multiprocessing
import queue
import signal
import threading
from collections.abc import Generator, Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from silse_spark.decode import RESAMPLE
from silse_spark.framing import frame
from silse_spark.model import INPUT_SIZE
from silse_spark.variations import FAMILIES, vary

log = logging.getLogger(__name__)


def to_input(img: Image.Image, framing: str = "none") -> np.ndarray:
    """An RGB image of any size -> the model's uint8 ``(108, 108, 3)`` input, as decode does."""
    return np.asarray(frame(img.convert("RGB"), INPUT_SIZE, RESAMPLE, framing), dtype=np.uint8)


def altered(canvas: np.ndarray, families: Sequence[str], rng: np.random.Generator, chain: int = 1,
            framing: str = "none") -> np.ndarray:
    """Apply ``chain`` random families (drawn from ``families``) to a canvas, return model input."""
    img = Image.fromarray(canvas, "RGB")
    for _ in range(chain):
        img = vary(img, families[int(rng.integers(len(families)))], rng)
    return to_input(img, framing)


class PairBatches:
    """Endless batches ``(a, b)`` of uint8 ``(batch, 108, 108, 3)`` arrays.

    Parameters
    ----------
    canvases
        ``(n, 128, 128, 3)`` uint8 corpus (a memory map is fine).
    families
        Variation families for the copies (keys of ``variations.FAMILIES``).
    batch_size
        Rows per batch.
    seed
        Seed of the batch stream; the same seed gives the same batches.
    anchor_alter_prob
        Probability that the original is altered too (both sides of a pair
        are copies); 0 for the design's clean-original pairs.
    max_chain
        Copies get 1..``max_chain`` stacked variations.
    with_ids
        Iterate over ``(a, b, ids)`` instead of ``(a, b)``: ``ids`` are the
        rows' corpus indices (int64). The images are the same either way.
    framing
        The model's framing (:mod:`silse_spark.framing`), applied to both sides.
    """

    def __init__(
        self,
        canvases: np.ndarray,
        families: Sequence[str],
        batch_size: int,
        seed: int,
        anchor_alter_prob: float = 0.0,
        max_chain: int = 1,
        with_ids: bool = False,
        framing: str = "none",
    ) -> None:
        unknown = [f for f in families if f not in FAMILIES]
        if unknown:
            raise ValueError(f"unknown variation families {unknown}; expected some of {sorted(FAMILIES)}")
        if len(canvases) < batch_size:
            raise ValueError(f"corpus has {len(canvases)} images, fewer than one batch of {batch_size}")
        self.canvases = canvases
        self.families = list(families)
        self.batch_size = batch_size
        self.rng = np.random.default_rng(seed)
        self.anchor_alter_prob = anchor_alter_prob
        self.max_chain = max_chain
        self.with_ids = with_ids
        self.framing = framing

    def batch(self) -> tuple[np.ndarray, np.ndarray]:
        """The next ``(a, b)``: originals and their altered copies, row for row."""
        a, b, _ = self.labelled_batch()
        return a, b

    def labelled_batch(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """The next ``(a, b, ids)``, ``ids[i]`` the corpus index that row ``i`` was made from."""
        idx = self.rng.choice(len(self.canvases), size=self.batch_size, replace=False)
        a = np.empty((self.batch_size, INPUT_SIZE, INPUT_SIZE, 3), np.uint8)
        b = np.empty_like(a)
        idx = np.sort(idx)
        for row, i in enumerate(idx):
            canvas = np.asarray(self.canvases[i])
            if self.rng.random() < self.anchor_alter_prob:
                a[row] = altered(canvas, self.families, self.rng, framing=self.framing)
            else:
                a[row] = to_input(Image.fromarray(canvas, "RGB"), self.framing)
            chain = int(self.rng.integers(1, self.max_chain + 1))
            b[row] = altered(canvas, self.families, self.rng, chain, self.framing)
        order = self.rng.permutation(self.batch_size)
        return a[order], b[order], idx[order].astype(np.int64)

    def __iter__(self) -> Iterator[tuple[np.ndarray, ...]]:
        while True:
            yield self.labelled_batch() if self.with_ids else self.batch()


def _feed(batches: PairBatches, out: Any, stop: Any) -> None:
    """Put ``batches`` into the queue ``out`` (a thread's or a process's) until ``stop`` is set."""
    for item in batches:
        while not stop.is_set():
            try:
                out.put(item, timeout=0.5)
                break
            except queue.Full:
                continue
        if stop.is_set():
            return


def prefetch(batches: PairBatches, depth: int = 4) -> Generator[tuple[np.ndarray, ...], None, None]:
    """Produce batches on a background thread (PIL releases the GIL while resampling)."""
    q: queue.Queue[tuple[np.ndarray, ...]] = queue.Queue(maxsize=depth)
    stop = threading.Event()

    thread = threading.Thread(target=_feed, args=(batches, q, stop), name="pair-batches", daemon=True)
    thread.start()
    try:
        while True:
            yield q.get()
    finally:
        stop.set()


def worker_seed(seed: int, worker: int) -> int:
    """The batch-stream seed of pair worker ``worker`` of a run seeded ``seed``: independent streams per worker.

    >>> worker_seed(5, 0) == worker_seed(5, 0), worker_seed(5, 0) == worker_seed(5, 1)
    (True, False)
    """
    return int(np.random.SeedSequence([seed, worker]).generate_state(1)[0])


def _pair_worker(corpus: str, seed: int, options: dict[str, Any], out: Any, stop: Any) -> None:
    """Body of one pair-generating process: its own :class:`PairBatches` over the memory-mapped corpus."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C reaches the whole group: the trainer stops the workers
    out.cancel_join_thread()  # exit without flushing batches nobody will read
    _feed(PairBatches(np.load(corpus, mmap_mode="r"), seed=seed, **options), out, stop)


def parallel_batches(corpus: Path, workers: int, seed: int, depth: int = 4, **options: Any
                     ) -> Generator[tuple[np.ndarray, ...], None, None]:
    """Batches from ``workers`` processes, each a :class:`PairBatches` seeded ``worker_seed(seed, k)``.

    For machines whose cores outnumber what the training step uses (a GPU
    machine: one background thread makes a few hundred pairs per second, the
    GPU consumes thousands). ``corpus`` is the ``train.npy`` file, memory-mapped
    by each worker (nothing is copied to them); ``options`` are
    :class:`PairBatches`' other arguments. Batches are taken from the workers
    in turn (batch ``i`` from worker ``i % workers``), so the stream is the
    same on every run with the same seed and worker count, whatever the
    workers' speeds. Workers are started with ``spawn`` (no copy of the
    parent's TensorFlow or JAX state) and stopped when the iterator is closed.
    """
    if workers < 1:
        raise ValueError(f"workers must be at least 1, got {workers}")
    context = multiprocessing.get_context("spawn")
    stop = context.Event()
    queues = [context.Queue(maxsize=depth) for _ in range(workers)]
    procs = [context.Process(target=_pair_worker, name=f"pair-worker-{k}", daemon=True,
                             args=(str(corpus), worker_seed(seed, k), options, queues[k], stop))
             for k in range(workers)]
    for proc in procs:
        proc.start()
    try:
        k = 0
        while True:
            try:
                item = queues[k].get(timeout=10)
            except queue.Empty:
                if not procs[k].is_alive():
                    raise RuntimeError(f"pair worker {k} exited with code {procs[k].exitcode}; "
                                       f"its traceback is above") from None
                continue
            yield item
            k = (k + 1) % workers
    finally:
        stop.set()
        for proc in procs:
            proc.join(timeout=5)
            if proc.is_alive():
                proc.terminate()
