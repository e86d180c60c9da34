"""Epoch-to-epoch order: how much of one epoch's order the next epoch repeats.

Two numbers from two consecutive training epochs of the default reader: the correlation between each
example's positions in them (a fresh permutation gives about 0), and how often two examples that shared a
batch share one again, as a multiple of a fresh permutation's rate ((batch - 1) / (n - 1)).
"""

from __future__ import annotations

import os
from typing import Any

import numpy as np

from bench import inputs


def order_metrics(first: np.ndarray, second: np.ndarray, batch_size: int) -> dict[str, float]:
    """Position correlation and batch co-occurrence between two orders of the same row ids."""
    n = len(first)
    ids = np.sort(first)
    pos_a, pos_b = np.empty(n, np.int64), np.empty(n, np.int64)
    pos_a[np.searchsorted(ids, first)] = np.arange(n)
    pos_b[np.searchsorted(ids, second)] = np.arange(n)
    batch_a, batch_b = pos_a // batch_size, pos_b // batch_size

    def pairs(keys: np.ndarray) -> int:
        _, c = np.unique(keys, return_counts=True)
        return int((c * (c - 1) // 2).sum())

    again = pairs(batch_a * (n // batch_size + 1) + batch_b) / pairs(batch_a)
    return {"position_correlation": float(np.corrcoef(pos_a, pos_b)[0, 1]), "cooccurrence": again,
            "cooccurrence_vs_fresh": again / ((batch_size - 1) / (n - 1))}


def two_epochs(dataset: str, batch_size: int, seed: int = 0, **options: Any) -> tuple[np.ndarray, np.ndarray]:
    """Row ids of training epochs 0 and 1 as ``train_dataset`` yields them with the given ``ReadOptions``."""
    from shardkit.train import dataset as reader

    ds = reader.open_dataset(dataset)
    opts = reader.ReadOptions(with_row_id=True, **options)
    steps = reader.training_plan(ds, batch_size).steps_per_epoch
    ids = [x["row_id"].numpy() for x, _ in reader.train_dataset(ds, batch_size, 2, seed=seed, options=opts)]
    return np.concatenate(ids[:steps]), np.concatenate(ids[steps:])


def evict(dataset: str) -> None:
    """Drop a dataset's files from the page cache (``posix_fadvise(DONTNEED)``; no root needed)."""
    from shardkit.train.readahead import evict as evict_files

    evict_files([os.path.join(root, name) for root, _, files in os.walk(dataset) for name in files])


def read_rates(dataset: str, batch_size: int) -> dict[str, float]:
    """Training-stream examples/s: an epoch read from disk (files evicted first) and the median of two
    steady-state epochs read warm."""
    from bench.reading import epoch_seconds

    evict(dataset)
    cold, n = epoch_seconds(dataset, batch_size, 1)
    warm, _ = epoch_seconds(dataset, batch_size, 3)
    return {"cold_examples_per_s": n / cold[0], "warm_examples_per_s": n / float(np.median(warm[1:]))}


def measure(cache: str, sizes: dict[str, int], image: int = 128, batch_size: int = 64) -> dict[str, Any]:
    """For each labelled row count: the two metrics and the read rates with the converter's default shards
    and with 5 shards (what the size-based default alone gave a dataset of under 800 MB of 128x128x3 images)."""
    from shardkit.spec import read_metadata

    rows_out = []
    for label, rows in sizes.items():
        for sharding, extra in (("default", ()), ("5 shards", ("--num-shards", "5"))):
            ds = inputs.dataset(cache, "knots", rows, *extra, size=image)
            train = read_metadata(ds).splits["train"]
            rows_out.append({"dataset": label, "sharding": sharding, "train_rows": train.count,
                             "train_shards": len(train.shards), **order_metrics(*two_epochs(ds, batch_size), batch_size),
                             **read_rates(ds, batch_size)})
    return {"rows": rows_out, "image": image, "batch_size": batch_size}
