"""Reader throughput sweeps that complement train_bench: interleave cycle length, shard count, GZIP vs none."""

from __future__ import annotations

import os
import time
from typing import Any, Sequence

from shardkit.spec import read_metadata

from . import api, datasets
from .measure import median


def reader_throughput(dataset_dir: str, batch_size: int, repeats: int, **reader_options: Any) -> dict[str, Any]:
    """Examples/s (median of ``repeats`` full passes over the train split) of the shuffling shardkit reader."""
    meta = read_metadata(dataset_dir)
    n = meta.splits["train"].count
    decoded = meta.features[0].raw_nbytes
    ds = api.train_reader(dataset_dir, batch_size, **reader_options)
    for _ in ds.take(2):
        pass
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        seen = 0
        for _, y in ds:
            seen += int(y.shape[0])
        times.append(time.perf_counter() - start)
    t = median(times)
    return {"examples": seen, "seconds": t, "examples_per_s": seen / t, "mb_per_s": seen * decoded / t / 1e6,
            "all_seconds": times, "train_count": n}


def sweep_cycle_length(dataset_dir: str, cycle_lengths: Sequence[int], batch_size: int,
                       repeats: int) -> list[dict[str, Any]]:
    """Throughput as the interleave cycle length (open shards read in parallel) grows."""
    out = []
    for c in cycle_lengths:
        r = reader_throughput(dataset_dir, batch_size, repeats, cycle_length=c)
        out.append({"x": c, **r})
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
