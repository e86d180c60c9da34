"""``shardkit-train verify``: read every record of a dataset and check it against its metadata.

Checks the record CRCs (a truncated or bit-flipped shard), that each record parses and decodes to the
declared spec, the counts per shard, split and class, that no stray shard sits beside the listed ones,
and that no row id and no identical content (every feature, targets excluded) appears in two splits (a
train/test leak). Class counts are those of the target the splits were stratified by (none without one).
Depends on shardkit.spec, TensorFlow and the shard scan in shardkit.train.opening.
"""

from __future__ import annotations

import argparse
import glob
import hashlib
import os
import re
import sys
from dataclasses import dataclass, field
from typing import Callable, Iterator, Mapping

import numpy as np

from shardkit import spec
from shardkit.train.arguments import dataset_command

BATCH = 256


@dataclass(frozen=True)
class Problem:
    """One thing wrong with a dataset: the file (relative to the dataset), the record index if any."""

    kind: str  # metadata, missing, stray, size, corrupt, record, count, duplicate, leak
    path: str
    message: str
    record: int | None = None

    def __str__(self) -> str:
        where = self.path if self.record is None else f"{self.path} record {self.record}"
        return f"[{self.kind}] {where}: {self.message}"


@dataclass
class ShardScan:
    """What reading one shard found: counts, and each record's index, row id and payload digest.

    Ids and digests are kept as compact per-batch arrays (24 bytes a record) for the cross-split checks.
    """

    count: int = 0
    class_counts: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int64))
    parts: list[tuple[np.ndarray, np.ndarray, np.ndarray]] = field(default_factory=list)  # (records, ids, digests)
    problems: list[Problem] = field(default_factory=list)

    def columns(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(record index, row id, 2 x uint64 digest) of every parsed record, in file order."""
        if not self.parts:
            return np.zeros(0, np.int64), np.zeros(0, np.int64), np.zeros((0, 2), np.uint64)
        records, ids, digests = zip(*self.parts)
        return np.concatenate(records), np.concatenate(ids), np.concatenate(digests)


def verify_dataset(dataset_dir: str, on_shard: Callable[[str, ShardScan], None] | None = None) -> list[Problem]:
    """Read every record of ``dataset_dir`` and return each problem found (empty: the dataset is sound).

    ``on_shard(path, scan)`` is called after each shard is read (progress for long runs).
    """
    try:
        meta = spec.read_metadata(dataset_dir)
    except spec.DatasetError as e:
        return [Problem("metadata", spec.METADATA_FILE, str(e))]
    problems = stray_files(dataset_dir, meta)
    scans: dict[str, list[tuple[str, ShardScan]]] = {}
    for split in ordered_splits(meta):
        info = meta.splits[split]
        scans[split] = []
        totals = np.zeros(_counted_classes(meta), np.int64)
        for shard in info.shards:
            scan = scan_shard(dataset_dir, shard.path, meta)
            if on_shard:
                on_shard(shard.path, scan)
            problems += scan.problems + shard_problems(dataset_dir, shard, scan)
            scans[split].append((shard.path, scan))
            totals += scan.class_counts
        problems += split_problems(split, info, totals)
    return problems + overlap_problems(scans)


def _counted_classes(meta: spec.Metadata) -> int:
    """Classes the splits' class_counts count: the stratify target's, or none."""
    return meta.label.num_classes if meta.stratify else 0


def ordered_splits(meta: spec.Metadata) -> list[str]:
    """train, validation, test first (so a leak is reported in the later split), then any others."""
    return [s for s in spec.SPLITS if s in meta.splits] + sorted(set(meta.splits) - set(spec.SPLITS))


def stray_files(dataset_dir: str, meta: spec.Metadata) -> list[Problem]:
    """Shard files on disk that the metadata does not list (left over from another run, or misplaced)."""
    listed = {os.path.normpath(s.path) for info in meta.splits.values() for s in info.shards}
    found = {
        os.path.normpath(os.path.relpath(p, dataset_dir))
        for split in spec.SPLITS
        for p in glob.glob(os.path.join(dataset_dir, split, "*.tfrecord*"))
    }
    return [Problem("stray", p, "shard file not listed in metadata.json") for p in sorted(found - listed)]


def shard_problems(dataset_dir: str, shard: spec.ShardInfo, scan: ShardScan) -> list[Problem]:
    """Size and count differences between one shard on disk and its metadata entry."""
    path = os.path.join(dataset_dir, shard.path)
    if not os.path.exists(path):
        return []
    out = []
    size = os.path.getsize(path)
    if size != shard.bytes:
        out.append(Problem("size", shard.path, f"file has {size} bytes, metadata says {shard.bytes}"))
    if scan.count != shard.count:
        out.append(Problem("count", shard.path, f"read {scan.count} records, metadata says {shard.count}"))
    elif tuple(int(c) for c in scan.class_counts) != tuple(shard.class_counts):
        out.append(
            Problem(
                "count",
                shard.path,
                f"class counts {scan.class_counts.tolist()} differ from metadata {list(shard.class_counts)}",
            )
        )
    return out


def split_problems(split: str, info: spec.SplitInfo, read_counts: np.ndarray) -> list[Problem]:
    """A split's own totals against the sum of its shards' metadata and what was actually read."""
    out = []
    listed = sum(s.count for s in info.shards)
    if listed != info.count:
        out.append(Problem("count", split, f"split count {info.count} != sum of its shard counts {listed}"))
    if int(read_counts.sum()) != info.count or tuple(int(c) for c in read_counts) != tuple(info.class_counts):
        out.append(
            Problem(
                "count",
                split,
                f"read {int(read_counts.sum())} records with class counts {read_counts.tolist()}, "
                f"metadata says {info.count} with {list(info.class_counts)}",
            )
        )
    return out


def scan_shard(dataset_dir: str, rel_path: str, meta: spec.Metadata) -> ShardScan:
    """Read every record of one shard, checking CRCs, parsing and decodability."""
    scan = ShardScan(class_counts=np.zeros(_counted_classes(meta), np.int64))
    path = os.path.join(dataset_dir, rel_path)
    if not os.path.exists(path):
        scan.problems.append(Problem("missing", rel_path, "shard listed in metadata.json does not exist"))
        return scan
    import tensorflow as tf

    from shardkit.train.opening import intact_batches

    batches, done = intact_batches(path, meta.compression, BATCH), 0
    while True:
        try:  # only the read is guarded: a read error is damage, anything from checking is not
            serialized = next(batches, None)
        except tf.errors.OpError as e:
            scan.problems.append(
                Problem("corrupt", rel_path, f"unreadable after {done} intact records ({tf_reason(e)})", record=done)
            )
            return scan
        if serialized is None:
            return scan
        check_batch(serialized, done, meta, rel_path, scan)
        done += len(serialized)


def tf_reason(e: Exception) -> str:
    """The useful part of a TensorFlow op error ("corrupted record at 3945"), without op/graph noise."""
    text = str(getattr(e, "message", "") or e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
    text = re.sub(r"\{\{[^}]*\}\}\s*", "", text)
    return re.sub(r"\s*\[Op:[^\]]*\].*$", "", text).strip() or type(e).__name__


def check_batch(serialized: np.ndarray, start: int, meta: spec.Metadata, rel_path: str, scan: ShardScan) -> None:
    """Parse a batch of records, validate each, and add its counts, row ids and hashes to ``scan``."""
    import tensorflow as tf

    features = spec.parse_spec(meta.features, meta.targets)
    try:
        parsed = {k: v.numpy() for k, v in tf.io.parse_example(serialized, features).items()}
        rows = [{k: v[i] for k, v in parsed.items()} for i in range(len(serialized))]
    except tf.errors.InvalidArgumentError:
        rows = []
        for i, record in enumerate(serialized):
            try:
                rows.append({k: v.numpy() for k, v in tf.io.parse_single_example(record, features).items()})
            except tf.errors.InvalidArgumentError as e:
                rows.append(None)
                scan.problems.append(
                    Problem("record", rel_path, f"does not parse as this dataset's example: {e.message}", start + i)
                )
    records, ids, digests = [], [], []
    for i, row in enumerate(rows):
        scan.count += 1
        if row is None:
            continue
        errors = record_errors(row, meta) + target_errors(row, meta)
        if meta.stratify:
            label = int(row[meta.stratify])  # type: ignore[call-overload]
            if 0 <= label < len(scan.class_counts):
                scan.class_counts[label] += 1
        for message in errors:
            scan.problems.append(Problem("record", rel_path, message, start + i))
        records.append(start + i)
        ids.append(int(row[spec.ROW_ID_KEY]))
        digests.append(payload_hash(row, meta.features))
    scan.parts.append(
        (
            np.asarray(records, np.int64),
            np.asarray(ids, np.int64),
            np.frombuffer(b"".join(digests), np.uint64).reshape(-1, 2),
        )
    )


def record_errors(row: Mapping[str, object], meta: spec.Metadata) -> list[str]:
    """Why one parsed record's features do not decode to their declared spec (empty if they do)."""
    errors = []
    for f in meta.features:
        data = row[f.name]
        if f.kind == "category":
            index = int(data)  # type: ignore[call-overload]
            if not 0 <= index < len(f.categories or ()):
                errors.append(f"feature {f.name!r} has category index {index} outside 0..{len(f.categories or ()) - 1}")
            continue
        if f.kind == "scalar":
            if not np.isfinite(float(data)):  # type: ignore[arg-type]
                errors.append(f"feature {f.name!r} is {float(data)}")  # type: ignore[arg-type]
            continue
        assert isinstance(data, bytes)
        if f.encoding == "png":
            if not data.startswith(b"\x89PNG\r\n\x1a\n"):
                errors.append(f"feature {f.name!r} is not PNG data")
        elif f.kind == "sequence":
            codes = np.frombuffer(data, np.uint8)
            if codes.size != f.shape[0]:
                errors.append(f"feature {f.name!r} has {codes.size} codes, expected {f.shape[0]}")
            elif codes.size and codes.max() >= f.num_codes:
                errors.append(f"feature {f.name!r} has code {int(codes.max())}, vocabulary has {f.num_codes - 1}")
            if int(row[f.name + spec.LENGTH_SUFFIX]) < 0:  # type: ignore[call-overload]
                errors.append(f"feature {f.name!r} has a negative length")
        elif len(data) != f.raw_nbytes:
            errors.append(f"feature {f.name!r} has {len(data)} bytes, shape {f.shape} {f.dtype} needs {f.raw_nbytes}")
    return errors


def target_errors(row: Mapping[str, object], meta: spec.Metadata) -> list[str]:
    """Why one parsed record's target values are not valid for their kinds (empty if they are)."""
    errors = []
    for t in meta.targets:
        value = np.asarray(row[t.name])
        name = "label" if t.name == spec.LABEL_KEY else f"target {t.name!r}"
        if t.kind == "class" and not 0 <= int(value) < t.num_classes:
            errors.append(f"{name} {int(value)} outside 0..{t.num_classes - 1}")
        elif t.kind == "multilabel" and not np.isin(value, (0, 1)).all():
            errors.append(f"{name} has values other than 0 and 1: {sorted(set(value.tolist()) - {0, 1})}")
        elif t.kind == "regression" and not np.isfinite(value).all():
            errors.append(f"{name} is not finite: {value.tolist()}")
    return errors


def payload_hash(row: Mapping[str, object], features: tuple[spec.Feature, ...]) -> bytes:
    """A digest of a record's content: every feature's stored value (targets and row id excluded), so two
    records that differ in any feature differ here."""
    h = hashlib.blake2b(digest_size=16)
    for f in features:
        value = row[f.name]
        data = value if isinstance(value, bytes) else np.asarray(value).tobytes()
        h.update(len(data).to_bytes(8, "little"))
        h.update(data)
    return h.digest()


def overlap_problems(scans: Mapping[str, list[tuple[str, ShardScan]]]) -> list[Problem]:
    """Row ids seen twice, and identical payloads under different row ids in two splits (a leak).

    Each repeat is reported against its first occurrence in train, validation, test order.
    """
    shards = [(split_no, path, scan.columns()) for split_no, items in enumerate(scans.values()) for path, scan in items]
    if not shards:
        return []
    paths = [path for _, path, _ in shards]
    shard = np.concatenate([np.full(len(cols[0]), k, np.int64) for k, (_, _, cols) in enumerate(shards)])
    split = np.array([split_no for split_no, _, _ in shards], np.int64)[shard]
    record, ids, digests = (np.concatenate([cols[c] for _, _, cols in shards]) for c in range(3))
    problems = []
    for j, i in repeats(ids[:, None]):
        kind = "duplicate" if split[i] == split[j] else "leak"
        problems.append(
            Problem(kind, paths[shard[j]], f"row_id {ids[j]} also in {paths[shard[i]]} record {record[i]}", int(record[j]))
        )
    for j, i in repeats(digests):
        if split[i] != split[j] and ids[i] != ids[j]:
            problems.append(
                Problem(
                    "leak",
                    paths[shard[j]],
                    f"same content as {paths[shard[i]]} record {record[i]} (row_id {ids[j]} vs {ids[i]})",
                    int(record[j]),
                )
            )
    return sorted(problems, key=lambda p: (p.path, p.record or 0, p.kind))


def repeats(keys: np.ndarray) -> Iterator[tuple[int, int]]:
    """(index, index of its first occurrence) for every row of the 2-D ``keys`` equal to an earlier row."""
    order = np.lexsort(keys.T[::-1])  # stable: equal rows stay in original order
    ordered = keys[order]
    repeat = np.concatenate([[False], np.all(ordered[1:] == ordered[:-1], axis=1)])
    group_start = np.maximum.accumulate(np.where(repeat, 0, np.arange(len(order))))
    for pos in np.flatnonzero(repeat):
        yield int(order[pos]), int(order[group_start[pos]])


def format_report(dataset_dir: str, problems: list[Problem], limit: int = 50) -> str:
    """A human report: OK with the record count, or each problem (the first ``limit``) and a tally."""
    if not problems:
        meta = spec.read_metadata(dataset_dir)
        n = sum(i.count for i in meta.splits.values())
        shards = sum(len(i.shards) for i in meta.splits.values())
        return f"OK: {dataset_dir}: {n} records in {shards} shards, all readable and matching metadata.json"
    kinds: dict[str, int] = {}
    for p in problems:
        kinds[p.kind] = kinds.get(p.kind, 0) + 1
    lines = [f"FAILED: {dataset_dir}: {len(problems)} problems (" + ", ".join(f"{k}: {v}" for k, v in kinds.items()) + ")"]
    lines += [f"  {p}" for p in problems[:limit]]
    if len(problems) > limit:
        lines.append(f"  ... and {len(problems) - limit} more (--max-report to show them)")
    return "\n".join(lines)


def run(args: argparse.Namespace) -> int:
    def progress(path: str, scan: ShardScan) -> None:
        status = "ok" if not scan.problems else f"{len(scan.problems)} problems"
        print(f"  {path}: {scan.count} records read, {status}", file=sys.stderr, flush=True)

    problems = verify_dataset(args.dataset, None if args.quiet else progress)
    print(format_report(args.dataset, problems, args.max_report))
    return 1 if problems else 0


def register(subparsers: "argparse._SubParsersAction[argparse.ArgumentParser]") -> argparse.ArgumentParser:
    """Add ``verify DATASET`` to a ``shardkit-train`` argument parser."""
    p = dataset_command(subparsers, "verify",
                        "read every record and check CRCs, counts and split leaks against metadata.json", __doc__, run)
    p.add_argument("--max-report", type=int, default=50, metavar="N", help="print at most N problems (default 50)")
    p.add_argument("--quiet", action="store_true", help="no per-shard progress on stderr")
    return p
