"""Writing one shard: read its planned rows, encode them, write the TFRecord file and a small stats file.

Runs inside Beam workers (any runner): plain values in, plain values out, no TensorFlow. Bad input is
recorded in an error file for the driver to report once, rather than raised through the runner.
"""

from __future__ import annotations

import io
import json
import os
import time
from dataclasses import dataclass
from typing import Any, Iterable

import numpy as np

from shardkit.spec import LABEL_KEY, ROW_ID_KEY, is_remote

from . import plan as planning
from . import publish
from .errors import ConvertError, InputError
from .publish import join
from .records import INT, ExampleLayout, ShardWriter
from .sources import BLOCK_BYTES, Source, SourceSpec, open_source

STATS_DIR = "_stats"
ERRORS_DIR = "_errors"


@dataclass(frozen=True)
class EncodeConfig:
    """What a worker needs to encode rows: the features (name, source column, encoder), the targets' record
    keys and wire types (in the plan's order) and the output settings.

    ``features`` empty means the one feature ``encoder`` named ``name``, read from each input's data column.
    """

    encoder: Any
    name: str
    compression: str | None
    tmp_dir: str
    specs: tuple[SourceSpec, ...]
    features: tuple[Any, ...] = ()  # features.FeatureJob
    targets: tuple[tuple[str, str], ...] = ((LABEL_KEY, INT),)


class _Aborted(Exception):
    """Another shard already failed; this one stops early."""


def save_plan(tasks: Iterable[planning.ShardTask], tmp_dir: str) -> list[planning.ShardRef]:
    """Store each shard's planned rows, labels and row ids beside the output for the workers, one shard at a
    time, in their narrowest integer types; return the refs the Beam job carries instead of the rows."""
    refs = []
    for task in tasks:
        n = len(task.rows)
        arrays = {"rows": task.rows.astype(planning.index_dtype(int(task.rows.max(initial=0)) + 1)),
                  "labels": task.labels.astype(np.min_scalar_type(int(task.labels.max(initial=0))))}
        for i, values in enumerate(task.targets):
            if values is not task.labels:
                arrays[f"target_{i}"] = values
        offset = int(task.row_ids[0] - task.rows[0]) if n else 0
        if not np.array_equal(task.row_ids, task.rows + offset):
            arrays["row_ids"] = task.row_ids
        buf = io.BytesIO()
        np.savez(buf, **arrays, id_offset=np.int64(offset), targets=np.int64(len(task.targets)))
        publish.write_bytes(join(tmp_dir, task.ref.plan_path), buf.getvalue())
        refs.append(task.ref)
    return refs


def load_task(ref: planning.ShardRef, tmp_dir: str) -> planning.ShardTask:
    """The shard task ``save_plan`` stored for ``ref``."""
    path = join(tmp_dir, ref.plan_path)
    with np.load(io.BytesIO(publish.read_bytes(path)), allow_pickle=False) as f:
        rows, labels = f["rows"].astype(np.int64), f["labels"].astype(np.int64)
        row_ids = f["row_ids"] if "row_ids" in f.files else rows + int(f["id_offset"])
        targets = tuple(f[f"target_{i}"] if f"target_{i}" in f.files else labels for i in range(int(f["targets"])))
    if len(rows) != ref.count:
        raise ConvertError(f"{path}: holds {len(rows)} rows, the plan says {ref.count}")
    return planning.ShardTask(ref.split, ref.index, ref.num_shards, ref.path, ref.source, rows, labels, row_ids, targets)


def write_shard(ref: planning.ShardRef, enc: EncodeConfig, sources: dict[int, Source]) -> dict[str, Any]:
    """Write one shard and return its stats; bad input is recorded for the driver instead of crashing workers.

    Recording (rather than raising) keeps worker tracebacks out of the user's terminal and lets the driver
    report one clear message; the other shards notice the error file and stop early.
    """
    task = ref
    try:
        if _failed(enc.tmp_dir):
            raise _Aborted()
        task = load_task(ref, enc.tmp_dir)
        return _write_shard(task, enc, sources)
    except _Aborted:
        return {"split": task.split, "index": task.index, "aborted": True}
    except (InputError, ConvertError) as e:
        try:
            publish.write_text(join(enc.tmp_dir, f"{ERRORS_DIR}/{task.split}-{task.index:05d}.txt"), str(e))
        except OSError:
            raise e from None
        return {"split": task.split, "index": task.index, "error": str(e)}


def _failed(tmp_dir: str) -> bool:
    return not is_remote(tmp_dir) and os.path.isdir(os.path.join(tmp_dir, ERRORS_DIR))


def worker_errors(tmp_dir: str) -> list[str]:
    """Messages of shards that failed on bad input or unwritable output, in shard order."""
    return [(publish.read_text(p) or "").strip() for p in publish.list_files(join(tmp_dir, ERRORS_DIR), ".txt")]


def _write_shard(task: planning.ShardTask, enc: EncodeConfig, sources: dict[int, Source]) -> dict[str, Any]:
    """Read one shard's rows, encode them in planned order, write the TFRecord file; return its stats."""
    started = time.time()
    if task.source not in sources:
        sources[task.source] = open_source(enc.specs[task.source])
    src = sources[task.source]
    path = join(enc.tmp_dir, task.path)
    try:
        writer = ShardWriter(path, enc.compression)
    except OSError as e:
        raise ConvertError(f"cannot write {path}: {e.strerror or e}") from e
    k = int(task.labels.max()) + 1 if len(task.labels) else 0
    stats = {"truncated_sequences": 0, "truncated_letters": 0, "unknown_letters": 0}
    done = 0
    features = enc.features or (_Job(enc.name, src.spec.data, enc.encoder),)
    fields = [f for job in features for f in job.encoder.fields(job.name)]
    layout = ExampleLayout(fields + list(enc.targets) + [(ROW_ID_KEY, INT)])
    targets = [t.tolist() for t in (task.targets or (task.labels,))]
    all_ids = task.row_ids.tolist()
    first = features[0]
    chunk = _block_rows(features)
    try:
        for rows, values in src.read_rows(task.rows, first.column):
            for lo in range(0, len(rows), chunk):
                if _failed(enc.tmp_dir):
                    raise _Aborted()
                part = rows[lo : lo + chunk]
                n = len(part)
                columns: list[list[Any]] = []
                for job in features:
                    got = values[lo : lo + n] if job is first else src.take(part, job.column)
                    cols, counts = job.encoder.encode(got, part, src.where(job.column))
                    columns.extend(cols)
                    for key, c in counts.items():
                        stats[key] = stats.get(key, 0) + c
                columns.extend(t[done : done + n] for t in targets)
                columns.append(all_ids[done : done + n])
                for record in zip(*columns):
                    writer.write_pieces(*layout.pieces(record))
                done += n
        size = writer.close()
    except OSError as e:
        writer.abort()
        raise ConvertError(f"cannot write {path}: {e.strerror or e}") from e
    except BaseException:
        writer.abort()
        raise
    info = {
        "split": task.split, "index": task.index, "path": task.path, "count": done, "bytes": size, "crc32c": writer.crc32c,
        "class_counts": np.bincount(task.labels, minlength=k).tolist(), **stats,
        "started": started, "finished": time.time(),
    }
    publish.write_text(join(enc.tmp_dir, f"{STATS_DIR}/{task.split}-{task.index:05d}.json"), json.dumps(info))
    return info


@dataclass(frozen=True)
class _Job:
    """The one feature of ``EncodeConfig`` without ``features``."""

    name: str
    column: str
    encoder: Any


def _block_rows(features: tuple[Any, ...]) -> int:
    """Rows encoded at once: about ``BLOCK_BYTES`` of decoded features (files are loaded, and further columns
    read, one such block at a time), at most 4096."""
    row = sum(job.encoder.feature(job.name).raw_nbytes for job in features)
    return max(1, min(4096, BLOCK_BYTES // max(1, 2 * row)))
