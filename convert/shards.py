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

from shardkit.spec import is_remote

from . import plan as planning
from . import publish
from .encoders import SequenceEncoder
from .errors import ConvertError, InputError
from .publish import join
from .records import ExampleLayout, ShardWriter
from .sources import Source, SourceSpec, open_source

STATS_DIR = "_stats"
ERRORS_DIR = "_errors"


@dataclass(frozen=True)
class EncodeConfig:
    """What a worker needs to encode rows: the encoder, the feature name and the output settings."""

    encoder: Any
    name: str
    compression: str | None
    tmp_dir: str
    specs: tuple[SourceSpec, ...]


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
        offset = int(task.row_ids[0] - task.rows[0]) if n else 0
        if not np.array_equal(task.row_ids, task.rows + offset):
            arrays["row_ids"] = task.row_ids
        buf = io.BytesIO()
        np.savez(buf, **arrays, id_offset=np.int64(offset))
        publish.write_bytes(join(tmp_dir, task.ref.plan_path), buf.getvalue())
        refs.append(task.ref)
    return refs


def load_task(ref: planning.ShardRef, tmp_dir: str) -> planning.ShardTask:
    """The shard task ``save_plan`` stored for ``ref``."""
    path = join(tmp_dir, ref.plan_path)
    with np.load(io.BytesIO(publish.read_bytes(path)), allow_pickle=False) as f:
        rows, labels = f["rows"].astype(np.int64), f["labels"].astype(np.int64)
        row_ids = f["row_ids"] if "row_ids" in f.files else rows + int(f["id_offset"])
    if len(rows) != ref.count:
        raise ConvertError(f"{path}: holds {len(rows)} rows, the plan says {ref.count}")
    return planning.ShardTask(ref.split, ref.index, ref.num_shards, ref.path, ref.source, rows, labels, row_ids)


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
    where = src.where(src.spec.data)
    path = join(enc.tmp_dir, task.path)
    try:
        writer = ShardWriter(path, enc.compression)
    except OSError as e:
        raise ConvertError(f"cannot write {path}: {e.strerror or e}") from e
    k = int(task.labels.max()) + 1 if len(task.labels) else 0
    stats = {"truncated_sequences": 0, "truncated_letters": 0, "unknown_letters": 0}
    done = 0
    lut = enc.encoder.table() if isinstance(enc.encoder, SequenceEncoder) else None
    layout = ExampleLayout(enc.name, ("label", "row_id") + ((enc.name + "_length",) if lut is not None else ()))
    all_labels, all_ids = task.labels.tolist(), task.row_ids.tolist()
    try:
        for rows, values in src.read_rows(task.rows):
            if _failed(enc.tmp_dir):
                raise _Aborted()
            n = len(rows)
            labels, ids = all_labels[done : done + n], all_ids[done : done + n]
            if lut is not None:
                for i in range(n):
                    payload, st = enc.encoder.encode_one(values[i], lut, int(rows[i]), where)
                    stats["truncated_sequences"] += st.truncated
                    stats["truncated_letters"] += st.cut
                    stats["unknown_letters"] += st.unknown
                    writer.write_pieces(*layout.pieces(payload, (labels[i], ids[i], st.length)))
            else:
                for i, payload in enumerate(enc.encoder.encode(values, rows, where)):
                    writer.write_pieces(*layout.pieces(payload, (labels[i], ids[i])))
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
