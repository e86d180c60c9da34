"""Open a shardkit dataset: metadata.json, each shard present at its recorded size, and the records readable.

``open_dataset`` is the one entry point; ``intact_batches`` is the one CRC scan of a shard, shared by
``intact_count``, ``find_corrupt_shards`` and ``shardkit-train verify``. The tf.data pipeline over an opened
``Dataset`` is in ``shardkit.train.dataset``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Iterator

import numpy as np
import tensorflow as tf

from shardkit import spec
from shardkit.spec import DatasetError, Metadata
from shardkit.train.staging import STREAMS


@dataclass(frozen=True)
class WorkerShard:
    """This input pipeline's share of a multi-worker run: FILE (whole shards) or DATA (every n-th record)."""

    index: int = 0
    count: int = 1
    policy: str = "FILE"


@dataclass(frozen=True)
class Dataset:
    """A dataset directory with its metadata, and the record count of each shard actually readable."""

    path: str
    metadata: Metadata
    counts: dict[str, tuple[int, ...]] = field(default_factory=dict)  # split -> records per shard
    lost: dict[str, int] = field(default_factory=dict)  # shard path -> records lost (skip_corrupt)

    @property
    def feature(self) -> spec.Feature:
        return self.metadata.features[0]

    def count(self, split: str) -> int:
        return int(sum(self.counts[split]))

    def shard_paths(self, split: str) -> list[str]:
        return self.metadata.shard_paths(self.path, split)


def open_dataset(path: str, skip_corrupt: bool = False, splits: tuple[str, ...] = spec.SPLITS) -> Dataset:
    """Read metadata.json and check every shard exists with the size the metadata records.

    A missing or resized shard raises ``DatasetError`` naming it. With ``skip_corrupt`` every shard's CRCs are
    scanned first (one extra read pass) and only the intact prefix of a damaged or missing shard is read; the
    records lost are in ``Dataset.lost``, and epochs stay exact over the records that remain.
    """
    path = path.removeprefix("file://")
    metadata = spec.read_metadata(path)
    counts: dict[str, tuple[int, ...]] = {}
    lost: dict[str, int] = {}
    for split in splits:
        if split not in metadata.splits:
            continue
        split_counts = []
        for shard, full in zip(metadata.splits[split].shards, metadata.shard_paths(path, split)):
            size = shard.bytes if path in STREAMS else shard_size(full)  # a bucket's shards are checked as downloaded
            problem = size_problem(size, shard.bytes)
            if problem and not skip_corrupt:
                raise DatasetError(f"{full}: {problem}")
            count = shard.count
            if skip_corrupt:
                count = 0 if size is None else min(intact_count(full, metadata.compression), shard.count)
                if count < shard.count:
                    lost[full] = shard.count - count
            split_counts.append(count)
        counts[split] = tuple(split_counts)
    return Dataset(path, metadata, counts, lost)


def shard_size(path: str) -> int | None:
    """A shard's size in bytes, or None when it is missing."""
    return tf.io.gfile.stat(path).length if tf.io.gfile.exists(path) else None


def size_problem(size: int | None, expected_bytes: int) -> str | None:
    """Why a shard of ``size`` bytes (None: missing) does not match metadata.json, or None when it does."""
    if size is None:
        return "shard is missing (the dataset is partial)"
    if expected_bytes and size != expected_bytes:
        return f"shard is {size} bytes but metadata.json records {expected_bytes}: truncated or modified"
    return None


def intact_batches(path: str, compression: str | None = None, batch_size: int = 1024) -> Iterator[np.ndarray]:
    """A shard's serialized records in file order, in batches, up to its first unreadable record; after that
    record's batch, the read error (``tf.errors.OpError``) is raised, so callers see damage as an exception.

    Whole batches are read first; after a failing batch the shard is re-read one record at a time from that
    batch's start, so every intact record is yielded exactly once and the record that fails is the next one.
    """
    def records() -> tf.data.Dataset:
        return tf.data.TFRecordDataset(path, compression_type=compression or "")

    done = 0
    try:
        for batch in records().batch(batch_size).as_numpy_iterator():
            yield batch
            done += len(batch)
        return
    except tf.errors.OpError:
        pass
    for record in records().skip(done).as_numpy_iterator():
        yield np.array([record], dtype=object)


def intact_count(path: str, compression: str | None = None) -> int:
    """Number of records at the start of a shard that pass their CRC (the readable prefix)."""
    n = 0
    try:
        for batch in intact_batches(path, compression):
            n += len(batch)
    except tf.errors.OpError:
        pass
    return n


def find_corrupt_shards(ds: Dataset, splits: tuple[str, ...] = spec.SPLITS) -> list[str]:
    """Scan shards (CRC of every record) and describe each damaged one: path, intact records, expected."""
    problems = []
    for split in splits:
        if split not in ds.metadata.splits:
            continue
        for shard, full in zip(ds.metadata.splits[split].shards, ds.shard_paths(split)):
            good = intact_count(full, ds.metadata.compression)
            if good < shard.count:
                problems.append(
                    f"{full}: record {good} fails its CRC or is truncated ({good} of {shard.count} records readable)"
                )
    return problems
