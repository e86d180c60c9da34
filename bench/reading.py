"""Reading section: shardkit's reader vs the seed-000 generator, a shuffled PyDataset over h5py and in-memory
numpy, and whole-epoch CPU training (both measured by train_bench), plus the cycle-length / shard-count / GZIP
sweeps (reading_bench)."""

from __future__ import annotations

import os
import traceback
from typing import Any, Callable

from . import api, datasets, reading_bench, train_bench

CANONICAL = (("steady", "shardkit"), ("first epoch", "shardkit, first epoch (incl. pipeline start)"),
             ("seed-000", "seed-000 generator"), ("PyDataset", "PyDataset over h5py"),
             ("adapter", "in-memory numpy"), ("fancy-index", "in-memory numpy gather (1 thread)"))


def _canonical(name: str) -> str:
    return next((short for key, short in CANONICAL if key in name), name)


def compare_readers(knots_per_class: int, batch_size: int, repeats: int) -> dict[str, Any]:
    """train_bench's reader table on 3 x ``knots_per_class`` knot images 128x128x3, rows renamed for the report
    (``description`` keeps train_bench's own wording)."""
    _, rows = train_bench.reader_table(knots_per_class, 128, batch_size, repeats)
    return {_canonical(name): {**r, "description": name, "shuffles": "no shuffle" not in name}
            for name, r in rows.items()}


def training_epochs(knots_per_class: int, knot_size: int, n_proteins: int, max_length: int, batch_size: int,
                    epochs: int, repeats: int, models: tuple[str, ...] = ("knot-cnn", "protein-cnn"),
                    large_proteins: int = 0) -> dict[str, Any]:
    """Whole-epoch CPU training time and peak RSS, shardkit vs in-memory arrays (train_bench.training_table);
    ``large_proteins`` adds one protein-cnn job big enough for the in-memory one-hot to dominate RSS (run once)."""
    jobs, large = [], []
    if "knot-cnn" in models:
        _, knot_ds = train_bench.knots(knots_per_class, knot_size)
        jobs.append((f"knot-cnn ({3 * knots_per_class:,} knots {knot_size}x{knot_size})", "knot-cnn", knot_ds))
    if "protein-cnn" in models:
        jobs.append((f"protein-cnn ({n_proteins:,} proteins, {max_length}x21 one-hot)", "protein-cnn",
                     train_bench.proteins(n_proteins, max_length)))
    if large_proteins:
        large.append((f"protein-cnn ({large_proteins:,} proteins, {max_length}x21 one-hot)", "protein-cnn",
                      train_bench.proteins(large_proteins, max_length)))
    rows = train_bench.training_table(jobs, batch_size, epochs, repeats)[1] if jobs else {}
    if large:
        rows.update(train_bench.training_table(large, batch_size, epochs, 1)[1])
    out: dict[str, Any] = {}
    for label, _, _ in [*jobs, *large]:
        out[label] = {}
        for feed in ("shardkit", "in-memory"):
            r = rows[f"{label} / {feed}"]
            out[label][feed] = {"seconds": r["epoch_s"], "peak_rss_bytes": r["peak_rss_mb"] * 2**20,
                                "data_rss_bytes": r["data_rss_mb"] * 2**20 if "data_rss_mb" in r else None,
                                "epochs_timed": r["epochs_timed"]}
    return out


def _part(fn: Callable[[], Any], tries: int = 1) -> Any:
    """One part of the section; a failure (after ``tries``) is recorded in place, the other parts still run."""
    for attempt in range(tries):
        try:
            return fn()
        except Exception:
            if attempt == tries - 1:
                return {"error": traceback.format_exc()}
    return None


def measure(cache: str, s: Any) -> dict[str, Any]:
    """Everything in the reading section at the sizes of ``s`` (run_all.Sizes)."""
    train_bench.CACHE = os.path.join(cache, "train")  # train_bench's inputs live in the same cache
    sweep_n, shards = s.reading_n, max(c for c in s.cycle_lengths if c)
    return {
        "dataset": f"{s.reading_n // 3 * 3:,} knot images 128x128x3 uint8 (shardkit: 8 train shards)",
        "batch_size": s.batch_size,
        "repeats": s.repeats,
        "reader_defaults": api.reader_defaults(),
        "readers": _part(lambda: compare_readers(s.reading_n // 3, s.batch_size, s.repeats)),
        "cycle_length": _part(lambda: reading_bench.sweep_cycle_length(
            datasets.knots_dataset(cache, sweep_n, extra=["--num-shards", str(shards)], tag=f"-shards{shards}"),
            s.cycle_lengths, s.batch_size, s.repeats)),
        "shard_count": _part(lambda: reading_bench.sweep_shard_count(cache, sweep_n, s.shard_counts, s.batch_size,
                                                                     s.repeats)),
        "compression": _part(lambda: reading_bench.compression(cache, sweep_n, s.reading_proteins, s.batch_size,
                                                               s.repeats)),
        "epoch": _part(lambda: training_epochs(**s.extra.get("training", {}), batch_size=s.batch_size), tries=2),
        "notes": ("Throughput = examples delivered per second by each reader over whole epochs with nothing "
                  "consuming them (train_bench.reader_table: median of the repeats after a warm-up epoch; page cache "
                  "warm; shardkit's row is the mean of epochs 2-4 of a fresh stream each round, as `fit` reads it, its first epoch "
                  "shown separately). shardkit = `shardkit.train.dataset.train_dataset` (shard order permuted per "
                  "epoch, parallel interleave, shuffle buffer over globally pre-shuffled shards, vectorised parse, "
                  "uint8 images). The cycle-length, shard-count and GZIP sweeps time epochs 2.. of one continuous "
                  "stream each, like the shardkit row. "
                  "seed-000 generator = the user's `imageLoader` verbatim (sequential PyTables slices, X/255 in "
                  "numpy: float64, no shuffle). PyDataset = a Keras PyDataset reading a fresh global permutation "
                  "from h5py each epoch (/255 float32). in-memory numpy = all images in RAM (uint8) read the way "
                  "`model.fit(x, y, shuffle=True)` does (Keras' array adapter, tf.data); the bare 1-thread numpy "
                  "gather (no framework at all) is shown for reference. Training epochs: train_bench, each feed "
                  "in a fresh process, first epoch (tracing) excluded, `model.fit` on the shardkit stream vs on the "
                  "decoded train split held as numpy arrays; peak RSS of that process."),
    }
