"""Split, shuffle and shard planning from the small columns only (labels, optional groups): pure functions.

The plan fixes, for every shard, the ordered source rows it holds, so that the Beam job that executes it
is deterministic whatever the runner or the number of workers.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Iterator

import numpy as np

from shardkit.spec import SPLITS, shard_name


PLAN_DIR = "_plan"


@dataclass(frozen=True)
class ShardRef:
    """One shard as the Beam job carries it: its identity and size, not its rows, so that the job graph
    grows with the number of shards and not with the number of rows. The rows lie in ``plan_path``."""

    split: str
    index: int
    num_shards: int
    path: str
    source: int
    count: int

    @property
    def plan_path(self) -> str:
        """Where this shard's planned rows are stored, relative to the conversion's temporary directory."""
        return f"{PLAN_DIR}/{self.split}-{self.index:05d}.npz"


@dataclass(frozen=True)
class ShardTask:
    """One shard to write: which input to read, which rows in which order, their labels (the stratify
    target's class ids), row ids and every target's values (``labels`` itself for the stratify target)."""

    split: str
    index: int
    num_shards: int
    path: str
    source: int
    rows: np.ndarray
    labels: np.ndarray
    row_ids: np.ndarray
    targets: tuple[np.ndarray, ...] = ()

    @property
    def ref(self) -> ShardRef:
        return ShardRef(self.split, self.index, self.num_shards, self.path, self.source, len(self.rows))


def read_fractions(text: str) -> tuple[float, ...]:
    """'0.8,0.1,0.1' -> (0.8, 0.1, 0.1): 1 to 3 non-negative numbers, whatever their sum; ValueError otherwise."""
    try:
        fr = tuple(float(x) for x in text.split(","))
    except ValueError:
        raise ValueError(f"{text!r}: expected comma-separated fractions such as 0.8,0.1,0.1") from None
    if not 1 <= len(fr) <= 3 or any(f < 0 or not math.isfinite(f) for f in fr):
        raise ValueError(f"{text!r}: expected 1 to 3 non-negative fractions (train,validation,test)")
    return fr


def parse_fractions(text: str) -> tuple[float, ...]:
    """'0.8,0.1,0.1' -> (0.8, 0.1, 0.1); 1 to 3 non-negative fractions summing to 1 (train, validation, test)."""
    try:
        fr = read_fractions(text)
    except ValueError as e:
        raise ValueError(f"--split {e}") from None
    if abs(sum(fr) - 1.0) > 1e-6:
        raise ValueError(f"--split {text!r}: fractions sum to {sum(fr):g}, not 1")
    return fr + (0.0,) * (3 - len(fr))


def index_dtype(num_rows: int) -> type:
    """The narrowest integer type that can number ``num_rows`` rows: row indices are the planner's memory."""
    return np.int32 if num_rows < 2**31 else np.int64


def stratified_split(labels: np.ndarray, fractions: tuple[float, ...], rng: np.random.Generator) -> list[np.ndarray]:
    """Row indices per split, shuffled; each class gets floor or ceil of its share in every split.

    Leftover units of a class go to the splits furthest below their running total, so split sizes stay
    within one or two rows of their overall share as well. ``labels`` are class ids (0..K-1). Memory is the
    labels, one index per row (``index_dtype``) and one class's indices at a time.
    """
    fr = np.asarray(fractions, dtype=np.float64)
    dtype = index_dtype(len(labels))
    counts = np.bincount(labels)
    classes = np.flatnonzero(counts)
    alloc = np.zeros((len(classes), len(fr)), dtype=np.int64)
    assigned = np.zeros(len(fr))
    seen = 0
    for j, c in enumerate(classes):
        n = int(counts[c])
        base = np.floor(fr * n).astype(np.int64)
        seen += n
        deficit = fr * seen - (assigned + base)
        for s in sorted(np.flatnonzero(fr > 0), key=lambda s: (-deficit[s], s))[: n - int(base.sum())]:
            base[s] += 1
        assigned += base
        alloc[j] = base
    out = [np.empty(int(size), dtype) for size in alloc.sum(axis=0)]
    filled = np.zeros(len(fr), dtype=np.int64)
    for j, c in enumerate(classes):
        idx = np.flatnonzero(labels == c).astype(dtype)
        rng.shuffle(idx)
        bounds = np.concatenate([[0], np.cumsum(alloc[j])])
        for s in range(len(fr)):
            out[s][filled[s] : filled[s] + alloc[j, s]] = idx[bounds[s] : bounds[s + 1]]
        filled += alloc[j]
    for rows in out:
        rng.shuffle(rows)
    return out


def group_split(
    labels: np.ndarray, groups: np.ndarray, fractions: tuple[float, ...], rng: np.random.Generator
) -> list[np.ndarray]:
    """Row indices per split, shuffled; every group lies wholly in one split.

    Groups are stratified by their majority class: within a class, shuffled groups are cut at the
    fractions of that class's rows, so classes and split sizes stay close to their shares.
    """
    keys, gid = np.unique(groups, return_inverse=True)
    sizes = np.bincount(gid, minlength=len(keys))
    k = int(labels.max()) + 1 if len(labels) else 1
    counts = np.zeros((len(keys), k), dtype=np.int64)
    np.add.at(counts, (gid, labels), 1)
    major = np.argmax(counts, axis=1)
    cum_fr = np.cumsum(fractions)
    split_of_group = np.zeros(len(keys), dtype=np.int64)
    for c in range(k):
        g = rng.permutation(np.flatnonzero(major == c))
        if not len(g):
            continue
        ends = np.cumsum(sizes[g])
        mid = (ends - sizes[g] / 2) / ends[-1]
        split_of_group[g] = np.minimum(np.searchsorted(cum_fr, mid, side="right"), len(fractions) - 1)
    row_split = split_of_group[gid]
    return [rng.permutation(np.flatnonzero(row_split == s)) for s in range(len(fractions))]


def shard_count(num_rows: int, record_bytes: float, target_bytes: float) -> int:
    """Shards needed for ``num_rows`` records of about ``record_bytes`` each to stay near ``target_bytes``."""
    return max(1, min(num_rows, math.ceil(num_rows * record_bytes / target_bytes))) if num_rows else 0


MIN_TRAIN_SHARDS = 64
MIN_SHARD_ROWS = 16


def split_shard_counts(counts: list[int], num_shards: int | None, record_bytes: float, target_bytes: float) -> list[int]:
    """Shards per split: ``num_shards`` for train and proportionally (at least 1) for the others, or by size.

    By size, train gets at least ``MIN_TRAIN_SHARDS`` shards (of at least ``MIN_SHARD_ROWS`` rows): the reader
    draws a new shard order every epoch, and with fewer shards than it reads at once an epoch's order would
    barely differ from the last (the epoch-order rows of docs/benchmarks.md).
    """
    if num_shards:
        ref = max(counts[0], 1)
        out = [num_shards if s == 0 else max(1, round(num_shards * n / ref)) for s, n in enumerate(counts)]
        return [min(o, n) if n else 0 for o, n in zip(out, counts)]
    out = [shard_count(n, record_bytes, target_bytes) for n in counts]
    if counts and counts[0]:
        out[0] = max(out[0], min(MIN_TRAIN_SHARDS, counts[0] // MIN_SHARD_ROWS))
    return out


@dataclass(frozen=True)
class ShardPlan:
    """Every shard's rows: each split's shuffled (input, rows), cut into contiguous, nearly equal shards.

    It holds one index array per split, not one per shard; ``tasks()`` makes one shard's arrays at a time.
    ``row_ids[source]`` of None means the row number plus ``offsets[source]`` (no id column).
    ``targets[t][source]`` are target t's values; target ``label_target`` is ``labels`` (not stored twice).
    """

    split_rows: list[tuple[int, np.ndarray]]
    labels: list[np.ndarray]
    row_ids: list[np.ndarray | None]
    offsets: list[int]
    shards_per_split: list[int]
    compression: str | None
    targets: tuple[list[Any], ...] = ()
    label_target: int | None = None

    def refs(self) -> list[ShardRef]:
        """Every shard's identity and row count, in split order."""
        out = []
        for s, ((source, rows), k) in enumerate(zip(self.split_rows, self.shards_per_split)):
            if not len(rows):
                continue
            split = SPLITS[s]
            for i in range(k):
                count = len(rows) // k + (i < len(rows) % k)  # np.array_split's sizes
                out.append(ShardRef(split, i, k, shard_name(split, i, k, self.compression), source, count))
        return out

    def tasks(self) -> Iterator[ShardTask]:
        """Each shard's rows, labels and row ids, one shard at a time, in ``refs()`` order."""
        refs = iter(self.refs())
        for (source, rows), k in zip(self.split_rows, self.shards_per_split):
            if not len(rows):
                continue
            for part in np.array_split(rows, k):
                ref = next(refs)
                part = part.astype(np.int64)
                ids = self.row_ids[source]
                labels = self.labels[source][part].astype(np.int64)
                yield ShardTask(
                    split=ref.split, index=ref.index, num_shards=k, path=ref.path, source=source, rows=part,
                    labels=labels,
                    row_ids=(part + self.offsets[source]) if ids is None else ids[part].astype(np.int64),
                    targets=tuple(labels if t == self.label_target else values[source][part]
                                  for t, values in enumerate(self.targets)),
                )
