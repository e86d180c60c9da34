"""Epoch-to-epoch order: the correlation between each example's positions in two consecutive training epochs (a
fresh permutation gives about 0), and how often batch-mates share a batch again, over a fresh permutation's rate."""

from __future__ import annotations

from typing import Any

import numpy as np

from shardkit.spec import read_metadata
from shardkit.train.options import ReadOptions
from shardkit.train.readahead import evict

from bench import inputs
from bench.reading import epoch_seconds, shard_files


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


def two_epochs(dataset: str, batch_size: int, **options: Any) -> tuple[np.ndarray, np.ndarray]:
    """Row ids of training epochs 0 and 1 as ``train_dataset`` yields them with the given ``ReadOptions``."""
    from shardkit.train import dataset as reader

    ds = reader.open_dataset(dataset)
    opts = reader.ReadOptions(with_row_id=True, **options)
    steps = reader.training_plan(ds, batch_size).steps_per_epoch
    ids = [x["row_id"].numpy() for x, _ in reader.train_dataset(ds, batch_size, 2, seed=0, options=opts)]
    return np.concatenate(ids[:steps]), np.concatenate(ids[steps:])


def measure(cache: str, sizes: dict[str, int], batch: int) -> dict[str, Any]:
    """For each labelled row count, with the converter's default shards and with 5 (what the size-based default
    alone gave under 800 MB of 128x128x3 images): both metrics, an epoch's examples/s cold and warm (median of 2)."""
    rows = []
    for label, n in sizes.items():
        for sharding, extra in (("default", ()), ("5 shards", ("--num-shards", "5"))):
            ds = inputs.dataset(cache, "knots", n, *extra)
            train, metrics = read_metadata(ds).splits["train"], order_metrics(*two_epochs(ds, batch), batch)
            evict(shard_files(ds, ("train", "validation", "test")))
            (cold,), seen = epoch_seconds(ds, batch, 1)
            warm = epoch_seconds(ds, batch, 3)[0][1:]
            rows.append({"dataset": label, "sharding": sharding, "train_rows": train.count,
                         "train_shards": len(train.shards), **metrics,
                         "cold_examples_per_s": seen / cold, "warm_examples_per_s": seen / float(np.median(warm))})
    return {"rows": rows, "image": 128, "batch_size": batch, "shuffle_buffer_mb": ReadOptions.shuffle_buffer_mb}
