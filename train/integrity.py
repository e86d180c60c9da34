"""Read-time integrity: the files a run reads must stay the ones it opened, and each shard must hold the
records metadata.json says.

A run stamps metadata.json and every shard when it opens the dataset (size, modification time, inode) and
compares at the end of every epoch and before writing its results (``DatasetWatch``, ``check_unchanged``):
a dataset converted again into the same directory, or a shard copied over, stops the run instead of
mixing two datasets. Record counts are checked by the reader itself (``dataset._records``); when reading
fails, ``read_error`` turns TensorFlow's error into one line naming the shard.
"""

from __future__ import annotations

import os
import struct

import keras
import tensorflow as tf

from shardkit import spec
from shardkit.spec import DatasetError
from shardkit.train import opening
from shardkit.train.staging import STREAMS

Stamp = tuple[int, int, int]  # size, mtime in ns, inode (0 where the filesystem has none)


def stamp(path: str) -> Stamp | None:
    """Identity of one file as the filesystem sees it, or None when it is gone."""
    try:
        if spec.is_remote(path):
            st = tf.io.gfile.stat(path)
            return int(st.length), int(st.mtime_nsec), 0
        st = os.stat(path)
        return int(st.st_size), int(st.st_mtime_ns), int(st.st_ino)
    except (OSError, tf.errors.NotFoundError):
        return None


def _files(ds: opening.Dataset) -> list[str]:
    """metadata.json and the shards (of a bucket dataset only metadata.json: its cache checks each download)."""
    shards = [] if ds.path in STREAMS else [p for split in ds.metadata.splits for p in ds.metadata.shard_paths(ds.path, split)]
    return [os.path.join(ds.path, spec.METADATA_FILE), *shards]


def snapshot(ds: opening.Dataset) -> dict[str, Stamp | None]:
    """Stamps of metadata.json and every shard, to compare against later (one stat per file)."""
    return {path: stamp(path) for path in _files(ds)}


def change(ds: opening.Dataset, before: dict[str, Stamp | None]) -> str | None:
    """What changed in the dataset's files since ``before`` (dataset id first), or None."""
    changed = [path for path, old in before.items() if stamp(path) != old]
    if not changed:
        return None
    meta_path = os.path.join(ds.path, spec.METADATA_FILE)
    if meta_path in changed:
        try:
            new_id = spec.read_metadata(ds.path).dataset_id
        except DatasetError:
            return "metadata.json is gone"
        if new_id != ds.metadata.dataset_id:
            return f"dataset id {ds.metadata.dataset_id} is now {new_id}"
    shard = next((p for p in changed if p != meta_path), meta_path)
    verb = "was removed" if stamp(shard) is None else "was replaced or modified"
    return f"{os.path.relpath(shard, ds.path)} {verb}"


def changed_error(ds: opening.Dataset, what: str, when: str = "") -> DatasetError:
    return DatasetError(
        f"{ds.path}: the dataset changed while it was being read ({what}); stopped{' ' + when if when else ''} "
        "so that no result mixes two datasets; start again with --overwrite or another --out"
    )


def check_unchanged(ds: opening.Dataset, before: dict[str, Stamp | None], when: str) -> None:
    """Raise ``DatasetError`` (one line) if the dataset changed since ``before``; ``when`` says where we are."""
    what = change(ds, before)
    if what:
        raise changed_error(ds, what, when)


class DatasetWatch(keras.callbacks.Callback):
    """Stop training at the end of an epoch whose dataset changed since the run opened it. Put it first in
    the callback list, so that no later callback records that epoch (history, best weights, backup)."""

    def __init__(self, ds: opening.Dataset, before: dict[str, Stamp | None]) -> None:
        super().__init__()
        self.ds, self.before = ds, before

    def on_epoch_end(self, epoch: int, logs: dict | None = None) -> None:
        check_unchanged(self.ds, self.before, f"after epoch {epoch + 1}")


def count_records(path: str, compression: str | None = None) -> int:
    """Records in one shard from its framing alone (headers only, no CRC checks); GZIP shards are read."""
    if compression:
        return opening.intact_count(path, compression)
    n = 0
    with tf.io.gfile.GFile(path, "rb") as f:
        size = f.size()
        offset = 0
        while offset + 12 <= size:
            f.seek(offset)
            (length,) = struct.unpack("<Q", f.read(8))
            offset += 8 + 4 + length + 4
            if offset > size:
                break
            n += 1
    return n


def count_problems(ds: opening.Dataset) -> list[str]:
    """Each shard whose record count on disk differs from metadata.json, with both counts."""
    problems = []
    for split in ds.metadata.splits:
        for shard, full in zip(ds.metadata.splits[split].shards, ds.shard_paths(split)):
            if full in ds.lost or opening.size_problem(opening.shard_size(full), shard.bytes):
                continue
            n = count_records(full, ds.metadata.compression)
            if n != shard.count:
                problems.append(
                    f"{full}: holds {n} records but metadata.json records {shard.count}; "
                    f"the shard does not match the metadata (shardkit-train verify {ds.path} lists every difference)"
                )
    return problems


def read_error(ds: opening.Dataset, before: dict[str, Stamp | None] | None, error: tf.errors.OpError) -> DatasetError | None:
    """One-line ``DatasetError`` for a TensorFlow error raised while reading ``ds``, or None if it is not
    about the data: a changed dataset first, then a damaged shard, a count mismatch, a vanished file."""
    if before is not None:
        what = change(ds, before)
        if what:
            return changed_error(ds, what)
    first_line = (str(error.message).strip().splitlines() or [""])[0]
    if isinstance(error, tf.errors.DataLossError):
        problems = opening.find_corrupt_shards(ds)
        detail = "; ".join(problems) or first_line
        return DatasetError(f"training stopped on a damaged shard: {detail} (use --skip-corrupt to read around it)")
    if isinstance(error, tf.errors.FailedPreconditionError) and "expected to contain" in first_line:
        problems = count_problems(ds)
        return DatasetError(problems[0] if problems else f"{ds.path}: a shard's record count differs from metadata.json ({first_line})")
    if isinstance(error, tf.errors.NotFoundError):
        return DatasetError(f"{ds.path}: a file of the dataset disappeared while it was being read ({first_line})")
    return None
