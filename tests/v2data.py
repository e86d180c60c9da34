"""Small format-version-2 datasets of any feature and target kinds, written record by record with
``spec.example_bytes`` and ``tf.io.TFRecordWriter`` (shard sizes, CRC32C and dataset id as the converter
records them), so the trainer's multi-column paths are tested on real TFRecords.

``learnable(out)`` writes a dataset whose targets follow from its features (see its docstring).
"""

from __future__ import annotations

import dataclasses
import os
from typing import Mapping

import crc32c
import numpy as np

from shardkit import spec
from shardkit.spec import Feature, Metadata, ShardInfo, SplitInfo, Target


def record(features: tuple[Feature, ...], targets: tuple[Target, ...], columns: Mapping[str, np.ndarray], row: int) -> bytes:
    """One example: every feature and target of row ``row`` of ``columns`` in its stored form, and its row id."""
    payload: dict[str, bytes] = {}
    ints: dict[str, object] = {spec.ROW_ID_KEY: row}
    floats: dict[str, object] = {}
    for f in features:
        value = columns[f.name][row]
        if f.stored_as_bytes:
            payload[f.name] = np.asarray(value, f.dtype).tobytes()
            if f.kind == "sequence":
                ints[f.name + spec.LENGTH_SUFFIX] = int(np.count_nonzero(value))
        elif f.kind == "scalar" and f.dtype == "float32":
            floats[f.name] = value
        else:
            ints[f.name] = value
    for t in targets:
        (floats if t.kind == "regression" else ints)[t.name] = columns[t.name][row]
    return spec.example_bytes(payload, ints, floats)


def write_dataset(
    out: str,
    features: tuple[Feature, ...],
    targets: tuple[Target, ...],
    columns: Mapping[str, np.ndarray],
    splits: Mapping[str, np.ndarray],
    stratify: str | None = None,
    num_shards: int = 2,
    seed: int = 0,
) -> str:
    """Write ``columns`` (name -> one value per row) as a dataset at ``out``: ``splits`` maps a split to its
    row numbers, dealt round-robin into ``num_shards`` shards each. Returns ``out``."""
    import tensorflow as tf

    infos = {}
    for split, rows in splits.items():
        os.makedirs(os.path.join(out, split), exist_ok=True)
        shards = []
        for k in range(num_shards):
            rel = spec.shard_name(split, k, num_shards, None)
            path = os.path.join(out, rel)
            mine = np.asarray(rows)[k::num_shards]
            with tf.io.TFRecordWriter(path) as writer:
                for row in mine:
                    writer.write(record(features, targets, columns, int(row)))
            counts = _class_counts(targets, stratify, columns, mine)
            with open(path, "rb") as f:
                data = f.read()
            shards.append(ShardInfo(rel, len(mine), len(data), counts, crc32c.crc32c(data)))
        total = tuple(int(sum(c)) for c in zip(*(s.class_counts for s in shards))) if stratify else ()
        infos[split] = SplitInfo(len(rows), total, tuple(shards))
    meta = Metadata(features, targets, infos, seed=seed, stratify=stratify, tool_version="tests/v2data",
                    created="2026-01-01T00:00:00+00:00", source={"writer": "tests/v2data.py"})
    spec.write_metadata(dataclasses.replace(meta, dataset_id=spec.content_id(meta)), out)
    return out


def _class_counts(targets: tuple[Target, ...], stratify: str | None, columns: Mapping[str, np.ndarray],
                  rows: np.ndarray) -> tuple[int, ...]:
    if stratify is None:
        return ()
    target = next(t for t in targets if t.name == stratify)
    return tuple(int(c) for c in np.bincount(np.asarray(columns[stratify])[rows], minlength=target.num_classes))


SITES = ("north", "south", "east", "west")


def learnable(out: str, n: int = 480, seed: int = 0, num_shards: int = 2) -> str:
    """Image ``scan`` (8x8x1 uint8), float scalar ``dose`` and category ``site`` features; targets:

    - ``kind`` (class, 3): 0 for north, 1 for south, 2 for east and west;
    - ``tags`` (multilabel, 3): dose > 0, site is north or south, the scan is bright;
    - ``score`` (regression): 2 * dose + 1 plus a little noise.

    Splits 75/12.5/12.5% in row order (rows are i.i.d.), stratified by ``kind``.
    """
    rng = np.random.default_rng(seed)
    dose = rng.normal(size=n).astype(np.float32)
    site = rng.integers(0, len(SITES), n)
    bright = rng.integers(0, 2, n)
    scan = np.clip(rng.normal(60 + 140 * bright[:, None, None, None], 20, (n, 8, 8, 1)), 0, 255).astype(np.uint8)
    columns = {
        "scan": scan,
        "dose": dose,
        "site": site.astype(np.int64),
        "kind": np.array([0, 1, 2, 2])[site],
        "tags": np.stack([dose > 0, site < 2, bright == 1], axis=1).astype(np.int64),
        "score": (2 * dose + 1 + rng.normal(0, 0.1, n)).astype(np.float32),
    }
    features = (
        Feature("scan", "image", (8, 8, 1), "uint8", "raw"),
        Feature("dose", "scalar", (), "float32", "float"),
        Feature("site", "category", (), "int64", "index", categories=SITES),
    )
    targets = (
        Target(3, ("north", "south", "east or west"), name="kind"),
        Target(3, ("positive dose", "north or south", "bright"), source_kind="multihot", name="tags", kind="multilabel"),
        Target(name="score", kind="regression"),
    )
    a, b = int(n * 0.75), int(n * 0.875)
    splits = {"train": np.arange(a), "validation": np.arange(a, b), "test": np.arange(b, n)}
    return write_dataset(out, features, targets, columns, splits, stratify="kind", num_shards=num_shards, seed=seed)


def scalar_regression(out: str, n: int = 64) -> str:
    """One int64 scalar feature ``x`` and one regression target ``y = x / 10``; random split, no class target."""
    x = np.arange(n, dtype=np.int64)
    columns = {"x": x, "y": (x / 10).astype(np.float32)}
    splits = {"train": np.arange(0, n - 16), "validation": np.arange(n - 16, n - 8), "test": np.arange(n - 8, n)}
    return write_dataset(out, (Feature("x", "scalar", (), "int64", "int64"),), (Target(name="y", kind="regression"),),
                         columns, splits, stratify=None, num_shards=1)


def build(metadata: Metadata):
    """A user model (``--model v2data:build``) for ``learnable``'s features: inputs named after the features
    and ``row_id`` (recorded, and the process killed at a batch, by ``test_train_recorder.RowRecorder``), one
    output layer named after each target, returned as a list."""
    import keras

    from test_train_recorder import RowRecorder

    scan = keras.Input((8, 8, 1), dtype="uint8", name="scan")
    dose = keras.Input((), dtype="float32", name="dose")
    site = keras.Input((), dtype="int32", name="site")
    row_id = keras.Input((), dtype="int64", name="row_id")
    bright = keras.layers.GlobalAveragePooling2D()(keras.layers.Rescaling(1 / 255.0)(scan))
    bright = RowRecorder(os.environ.get("SHARDKIT_ROW_LOG", os.devnull), int(os.environ.get("SHARDKIT_KILL_AFTER", "0")))(bright, row_id)
    where = keras.layers.Flatten()(keras.layers.Embedding(len(SITES), 4)(keras.layers.Reshape((1,))(site)))
    x = keras.layers.Concatenate()([bright, keras.layers.Reshape((1,))(dose), where])
    x = keras.layers.Dense(32, activation="relu")(x)
    outputs = [keras.layers.Dense(3, activation="softmax", name="kind")(x),
               keras.layers.Dense(3, activation="sigmoid", name="tags")(x),
               keras.layers.Dense(1, name="score")(x)]
    return keras.Model([scan, dose, site, row_id], outputs, name="rows")
