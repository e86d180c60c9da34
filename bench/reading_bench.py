"""Reader throughput sweeps that complement train_bench: interleave cycle length, shard count, GZIP vs none."""

from __future__ import annotations

import os
from typing import Any, Sequence

from shardkit.spec import read_metadata

from . import api, datasets
from .measure import median


def reader_throughput(dataset_dir: str, batch_size: int, repeats: int, **reader_options: Any) -> dict[str, Any]:
    """Examples/s of the shuffling shardkit reader in steady state, as ``fit`` reads it: the median of epochs
    2..repeats+1 of one continuous stream (epoch 1 starts the pipeline and is left out)."""
    meta = read_metadata(dataset_dir)
    decoded = meta.features[0].raw_nbytes
    times, seen = api.epoch_seconds(dataset_dir, batch_size, repeats + 1, **reader_options)
    t = median(times[1:])
    return {"examples": seen, "seconds": t, "examples_per_s": seen / t, "mb_per_s": seen * decoded / t / 1e6,
            "all_seconds": times[1:], "first_epoch_seconds": times[0], "train_count": meta.splits["train"].count}


def sweep_cycle_length(dataset_dir: str, cycle_lengths: Sequence[int | None], batch_size: int,
                       repeats: int) -> list[dict[str, Any]]:
    """Throughput as the interleave cycle length (open shards read in parallel) grows; None = AUTOTUNE."""
    out = []
    for c in cycle_lengths:
        r = reader_throughput(dataset_dir, batch_size, repeats, cycle_length=c)
        out.append({"x": "auto" if c is None else c, **r})
    return out


def sweep_shard_count(cache: str, n: int, shard_counts: Sequence[int], batch_size: int,
                      repeats: int) -> list[dict[str, Any]]:
    """Throughput of the same knot images converted into 1, 2, 4, ... shards."""
    out = []
    for s in shard_counts:
        path = datasets.knots_dataset(cache, n, extra=["--num-shards", str(s)], tag=f"-shards{s}")
        r = reader_throughput(path, batch_size, repeats)
        out.append({"x": s, **r})
    return out


def compression(cache: str, n_images: int, n_sequences: int, batch_size: int, repeats: int) -> list[dict[str, Any]]:
    """GZIP vs uncompressed shards of the same images and the same sequences: bytes on disk and throughput."""
    pairs = [
        ("knot images (raw uint8)", "none", datasets.knots_dataset(cache, n_images)),
        ("knot images (raw uint8)", "GZIP", datasets.knots_dataset(cache, n_images, extra=["--compression", "gzip"],
                                                                   tag="-gz")),
        ("protein codes", "none", datasets.proteins_dataset(cache, n_sequences)),
        ("protein codes", "GZIP", datasets.proteins_dataset(cache, n_sequences, extra=["--compression", "gzip"],
                                                            tag="-gz")),
    ]
    out = []
    for name, comp, path in pairs:
        meta = read_metadata(path)
        size = sum(sh.bytes for s in meta.splits.values() for sh in s.shards)
        r = reader_throughput(path, batch_size, repeats)
        out.append({"dataset": name, "compression": comp, "bytes": size, "path": os.path.basename(path), **r})
    return out
