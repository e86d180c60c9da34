"""The conversion: validate and plan in the driver, write shards in a Beam job, publish atomically.

``convert(ConvertConfig, beam_args)`` is the Python API; the CLI is a thin wrapper around it.
The Beam job is Create(shard refs) | Reshuffle | ParDo(write one shard); the rows of each shard travel as a
plan file in the temporary output, so the job graph is O(shards); payloads are never grouped.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
import logging
import os
import sys
import time
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from shardkit.spec import (AMINO_ACIDS, BYTES_KINDS, ENCODINGS, SPLITS, Metadata, ShardInfo, SplitInfo, Target, content_id,
                           is_remote)

from . import columns as cols
from . import features as feats
from . import plan as planning
from . import publish
from . import targets as targs
from .encoders import ARRAY_DTYPES, UNKNOWN_POLICIES, SequenceEncoder
from .errors import ConvertError, InputError, PublishError, raise_if_signalled
from .publish import join
from .ranged import check_s3_buckets
from .runner import (WORKER_MODES, check_beam_args, check_runner_paths, error_from, filesystem_options,
                     pipeline_options, restore_filesystem_options, run_job)
from .shards import STATS_DIR, EncodeConfig, save_plan, worker_errors
from .sources import Source, SourceSpec, expand_input, file_stat, open_source

__all__ = ["ConvertConfig", "Prepared", "convert", "prepare"]

RECORD_OVERHEAD = 64


@dataclass(frozen=True)
class ConvertConfig:
    """Everything a conversion needs, as plain values; the CLI takes its defaults from here (meanings: its --help)."""

    inputs: tuple[str, ...]
    out: str
    kind: str = ""
    data: str = ""
    label: str = ""
    id: str | None = None
    group_column: str | None = None
    name: str | None = None
    split_inputs: bool = False
    image_shape: tuple[int, ...] | None = None
    image_encoding: str = ENCODINGS["image"][0]
    image_scale: float | None = None
    max_length: int | None = None
    vocabulary: int = min(AMINO_ACIDS)
    unknown: str = UNKNOWN_POLICIES[0]
    dtype: str = ARRAY_DTYPES[0]
    split: tuple[float, ...] = (0.8, 0.1, 0.1)
    seed: int = 0
    num_shards: int | None = None
    shard_size_mb: float = 128.0
    compression: str | None = None  # None or "GZIP"
    workers: int = 0  # 0: one per CPU core
    worker_mode: str = WORKER_MODES[0]
    overwrite: bool = False
    progress: bool = True
    verbose: bool = False
    source_splits: tuple[str, ...] = field(default=())
    class_names: tuple[str, ...] | None = None
    features: tuple[cols.Column, ...] = ()  # empty: the one feature of kind/data (and name)
    targets: tuple[cols.Column, ...] = ()  # empty with features: the class target ``label`` of --label
    stratify: str | None = None  # the class target to stratify by (default: the first class target)

    @property
    def feature_name(self) -> str:
        return self.name or self.kind

    @property
    def shorthand(self) -> bool:
        """One feature given by kind/data and one class target ``label`` (the format's first layout)."""
        return not self.features


def columns_of(cfg: ConvertConfig) -> tuple[list[cols.Column], list[cols.Column], str | None]:
    """The features, targets and stratify target a config names, checked (InputError on mistakes)."""
    if cfg.shorthand:
        if not (cfg.kind and cfg.data and cfg.label):
            missing = [f for f, v in (("--kind", cfg.kind), ("--data", cfg.data), ("--label", cfg.label)) if not v]
            raise InputError(f"{' and '.join(missing)} missing: give --kind, --data and --label for one feature, or "
                             "--feature/--target (or --spec FILE) for several")
        features, targets = cols.shorthand(cfg.kind, cfg.data, cfg.name, cfg.label)
    else:
        if cfg.kind or cfg.data:
            raise InputError("--kind/--data describe the one feature of the shorthand; with --feature or --spec, "
                             "describe every feature there instead")
        features = list(cfg.features)
        targets = list(cfg.targets) + ([cols.Column("label", "class", cfg.label)] if cfg.label else [])
    stratify = cfg.stratify
    cols.check(features, targets, stratify)
    if stratify is None:
        stratify = next((t.name for t in targets if t.kind == "class"), None)
    return features, targets, stratify


def _source_specs(cfg: ConvertConfig, features: list[cols.Column], targets: list[cols.Column],
                  stratify: str | None) -> list[SourceSpec]:
    """One spec per input; a glob or folder becomes one table of its files in sorted order. Its data column is
    the first stored-as-bytes feature's, its label the stratify target's; the rest are further columns."""
    data = next((f.column for f in features if f.kind in BYTES_KINDS and not f.files), features[0].column)
    label = next((t.column for t in targets if t.name == stratify), targets[0].column)
    more = tuple(dict.fromkeys(c.column for c in (*features, *targets) if c.column not in (data, label)))
    specs = []
    for p in cfg.inputs:
        path = p if is_remote(p) else os.path.abspath(p.removeprefix("file://"))
        files = expand_input(path)
        parts = tuple(files) if files != [path] else ()
        specs.append(SourceSpec(path, data, label, cfg.id, cfg.group_column, parts=parts, columns=more))
    return specs


def _row_ids(cfg: ConvertConfig, sources: list[Source]) -> tuple[list[np.ndarray | None], list[int]]:
    """Each input's row ids from the --id column, or None (ids are row numbers counted across inputs),
    and each input's first row number."""
    offsets = np.concatenate([[0], np.cumsum([src.num_rows for src in sources])[:-1]]).astype(int).tolist()
    if not cfg.id:
        return [None] * len(sources), offsets
    out = []
    for src in sources:
        v = src.column(cfg.id)
        where = src.where(cfg.id)
        if v.dtype.kind == "f":
            bad = ~np.isfinite(v) | (v != np.rint(v))
            if bad.any():
                raise InputError(f"{where}, row {int(np.argmax(bad))}: id {v[int(np.argmax(bad))]!r} is not an integer")
            v = v.astype(np.int64)
        if v.dtype.kind not in "iu":
            raise InputError(f"{where}: ids must be integers, got {v.dtype}")
        out.append(v.astype(np.int64))
    allv = np.concatenate(out)
    uniq, counts = np.unique(allv, return_counts=True)
    if (counts > 1).any():
        raise InputError(f"{sources[0].where(cfg.id)}: id {int(uniq[np.argmax(counts > 1)])} appears more than once")
    return out, offsets


def _record_bytes(jobs: list[feats.FeatureJob], targets: list[Target], src: Source) -> float:
    """Estimated bytes of one record: its features (PNG images sampled), non-class targets and the overhead
    (keys, framing, one class id, row id and a sequence length)."""
    extra = sum(2 * t.num_classes if t.kind == "multilabel" else 5 * int(np.prod(t.shape)) if t.kind == "regression"
                else 0 for t in targets)
    return sum(feats.feature_bytes(j, src) for j in jobs) + extra + RECORD_OVERHEAD


def _plan(cfg: ConvertConfig, sources: list[Source], labels: list[np.ndarray], record_bytes: float,
          targets: tuple[list[np.ndarray], ...] = (), label_target: int | None = None) -> planning.ShardPlan:
    """Split (stratified by ``labels``; all zeros when there is no class target: a seeded random split),
    shuffle and cut into shards."""
    rng = np.random.default_rng(cfg.seed)
    row_ids, offsets = _row_ids(cfg, sources)
    if cfg.split_inputs:
        split_rows = []
        for split in SPLITS:
            if split in cfg.source_splits:
                i = cfg.source_splits.index(split)
                rows = np.arange(sources[i].num_rows, dtype=planning.index_dtype(sources[i].num_rows))
                rng.shuffle(rows)
                split_rows.append((i, rows))
            else:
                split_rows.append((0, np.zeros(0, np.int64)))
    else:
        if cfg.group_column:
            groups = sources[0].column(cfg.group_column)
            if groups.dtype.kind == "f" and np.isnan(groups).any():
                raise InputError(f"{sources[0].where(cfg.group_column)}, row {int(np.argmax(np.isnan(groups)))}: group missing")
            if groups.dtype.kind == "O":
                groups = groups.astype(str)
            parts = planning.group_split(labels[0], groups, cfg.split, rng)
        else:
            parts = planning.stratified_split(labels[0], cfg.split, rng)
        split_rows = [(0, p) for p in parts]
    counts = [len(r) for _, r in split_rows]
    per_split = planning.split_shard_counts(counts, cfg.num_shards, record_bytes, cfg.shard_size_mb * 1e6)
    return planning.ShardPlan(split_rows, labels, row_ids, offsets, per_split, cfg.compression, targets, label_target)


def order_inputs(cfg: ConvertConfig) -> ConvertConfig:
    """With --split-inputs, parse 'train=PATH' items and order the inputs train, validation, test."""
    if not cfg.split_inputs:
        if len(cfg.inputs) != 1:
            raise InputError(f"{len(cfg.inputs)} inputs given: pass one input to split, or --split-inputs "
                             "with train=PATH validation=PATH test=PATH")
        return cfg
    by_split: dict[str, str] = {}
    for item in cfg.inputs:
        split, sep, path = item.partition("=")
        if not sep or split not in SPLITS:
            raise InputError(f"{item!r}: with --split-inputs each input is SPLIT=PATH, SPLIT one of {SPLITS}")
        if split in by_split:
            raise InputError(f"{item!r}: split {split!r} given twice")
        by_split[split] = path
    if "train" not in by_split:
        raise InputError("--split-inputs needs a train=PATH input")
    if cfg.group_column:
        raise InputError("--group-column splits one input; it cannot be combined with --split-inputs")
    present = tuple(s for s in SPLITS if s in by_split)
    return dataclasses.replace(cfg, inputs=tuple(by_split[s] for s in present), source_splits=present)


@dataclass(frozen=True)
class Prepared:
    """The driver's result: validated encoders and targets, the shard plan, sizes for progress, and warnings
    about the plan (printed even with --quiet). ``encoder`` is the first feature's, ``label`` the stratify
    target (None for a random split)."""

    cfg: ConvertConfig
    specs: tuple[SourceSpec, ...]
    encoder: Any
    label: Target | None
    plan: planning.ShardPlan
    refs: list[planning.ShardRef]
    record_bytes: float
    input_bytes: int
    warnings: tuple[str, ...] = ()
    features: tuple[feats.FeatureJob, ...] = ()
    targets: tuple[Target, ...] = ()
    columns: tuple[cols.Column, ...] = ()  # what each feature and target was read from, for metadata.source

    def encode_config(self, tmp: str) -> EncodeConfig:
        """What the workers need to write this plan's shards into ``tmp``."""
        first = self.features[0]
        return EncodeConfig(first.encoder, first.name, self.cfg.compression, tmp, self.specs, self.features,
                            tuple((t.name, targs.wire_type(t)) for t in self.targets))


def _check_settings(cfg: ConvertConfig) -> None:
    """Settings the CLI's parser checks too, for callers of the Python API."""
    if cfg.seed < 0:
        raise InputError(f"--seed {cfg.seed}: must be 0 or more")
    if cfg.workers < 0:
        raise InputError(f"--workers {cfg.workers}: must be positive (0 in the API means one per CPU core)")


def plan_warnings(cfg: ConvertConfig, label: Target | None, plan: planning.ShardPlan) -> list[str]:
    """What the plan did that the user may not expect: a class too small to reach every split, and
    --num-shards above the train rows."""
    out = []
    if not cfg.split_inputs and label is not None:
        splits = [i for i, f in enumerate(cfg.split) if f > 0]
        counts = {i: np.bincount(plan.labels[plan.split_rows[i][0]][plan.split_rows[i][1]],
                                 minlength=label.num_classes) for i in splits}
        for c, name in enumerate(label.names):
            total = int(sum(counts[i][c] for i in splits))
            if 0 < total < len(splits):
                where = ", ".join(f"{SPLITS[i]} {int(counts[i][c])}" for i in splits)
                out.append(f"class {name!r} has {total} row{'s' if total > 1 else ''}, fewer than the "
                           f"{len(splits)} splits; its rows went to: {where}")
    rows, shards = len(plan.split_rows[0][1]), plan.shards_per_split[0]
    if cfg.num_shards and cfg.num_shards > rows:
        out.append(f"--num-shards {cfg.num_shards} is more than the {rows} train rows: writing {shards} train "
                   f"shard{'s' if shards != 1 else ''} of one row each instead")
    return out


def prepare(cfg: ConvertConfig) -> Prepared:
    """Open the inputs, validate them, map labels and plan every shard; reads only small columns
    (plus one pass over a sequence column for its lengths)."""
    _check_settings(cfg)
    cfg = order_inputs(cfg)
    features, targets, stratify = columns_of(cfg)
    specs = _source_specs(cfg, features, targets, stratify)
    defaults = feats.Defaults(cfg.image_shape, cfg.image_encoding, cfg.image_scale, cfg.max_length, cfg.vocabulary,
                              cfg.unknown, cfg.dtype)
    sources: list[Source] = []
    try:
        for s in specs:
            sources.append(open_source(s))
        if cfg.shorthand and cfg.kind in BYTES_KINDS:
            for src in sources:
                if (cfg.kind == "sequence") == (src.fmt == "hdf5"):
                    what = ("a string column of a Parquet/Feather/CSV file" if cfg.kind == "sequence"
                            else "an HDF5 array node, not a DataFrame column")
                    raise InputError(f"{src.where(cfg.data)}: --kind {cfg.kind} reads {what}")
        if cfg.max_length is not None and cfg.max_length < 1:
            raise InputError(f"--max-length {cfg.max_length}: must be at least 1")
        jobs = [feats.build(f, sources, defaults, data_column=cfg.shorthand) for f in features]
        read = []
        for t in targets:
            display = cfg.class_names if t.name == stratify else None
            read.append(targs.read_target(t, sources, display))
        target_specs = [t for t, _ in read]
        at = next((i for i, t in enumerate(target_specs) if t.name == stratify), None)
        labels = read[at][1] if at is not None else [np.zeros(src.num_rows, np.int8) for src in sources]
        rec = _record_bytes(jobs, target_specs, sources[0])
        shard_plan = _plan(cfg, sources, labels, rec, tuple(v for _, v in read), at)
        row_bytes = [sum(feats.input_bytes(j, src) for j in jobs) for src in sources]
    finally:
        for s in sources:
            s.close()
    refs = shard_plan.refs()
    in_bytes = sum(r.count * row_bytes[r.source] for r in refs)
    label = target_specs[at] if at is not None else None
    return Prepared(cfg, tuple(s.spec for s in sources), jobs[0].encoder, label, shard_plan, refs, rec, in_bytes,
                    tuple(plan_warnings(cfg, label, shard_plan)), tuple(jobs), tuple(target_specs),
                    tuple(features) + tuple(targets))


def convert(cfg: ConvertConfig, beam_args: list[str] | None = None, log: Any = None) -> Metadata:
    """Convert ``cfg.inputs`` into the dataset ``cfg.out``; publishes nothing unless everything succeeded."""
    beam_args = list(beam_args or [])
    start = time.time()
    check_beam_args(beam_args)
    fs_opts, _, runner_name = pipeline_options(beam_args, 1)
    previous = filesystem_options(fs_opts)  # gs://, s3:// calls in this process need the job's options
    beam_log = logging.getLogger("apache_beam")
    level = beam_log.level
    if not cfg.verbose:  # the driver relays its workers' warnings: quiet from Python as from the command line
        beam_log.setLevel(logging.CRITICAL)
    try:
        return _convert(cfg, beam_args, log, start, runner_name)
    finally:
        beam_log.setLevel(level)
        restore_filesystem_options(previous)


def _convert(cfg: ConvertConfig, beam_args: list[str], log: Any, start: float, runner_name: str) -> Metadata:
    from .progress import Progress

    paths = list(order_inputs(cfg).inputs) + [cfg.out]
    check_runner_paths(runner_name, beam_args, paths)
    check_s3_buckets(paths)
    publish.check_out(cfg.out, cfg.overwrite)
    prep = prepare(cfg)
    cfg = prep.cfg
    for w in prep.warnings:
        print(f"shardkit-convert: warning: {w}", file=log or sys.stderr, flush=True)
    workers = min(cfg.workers or os.cpu_count() or 1, len(prep.refs))
    opts, runner, runner_name = pipeline_options(beam_args, workers, cfg.worker_mode,
                                                 log_level="INFO" if cfg.verbose else "CRITICAL")

    publish.clean_stale(cfg.out)
    tmp = publish.tmp_dir_for(cfg.out)
    total_rows = sum(r.count for r in prep.refs)
    progress = Progress(tmp, total_rows, prep.input_bytes, prep.record_bytes, enabled=cfg.progress, log=log)
    try:
        publish.make_dir(tmp, cfg.out)
        with progress:
            save_plan(prep.plan.tasks(), tmp)
            _run(prep.refs, prep.encode_config(tmp), opts, runner, runner_name)
        raise_if_signalled()
        meta = _metadata(cfg, prep, tmp, start, runner_name)
        publish.publish(tmp, cfg.out, meta, cfg.overwrite, skip=(STATS_DIR, planning.PLAN_DIR))
    except PublishError as e:
        publish.remove(tmp)
        raise ConvertError(str(e)) from e
    except BaseException:
        publish.remove(tmp)
        raise
    if cfg.progress:
        progress.summary(meta, time.time() - start)
    return meta


def _run(refs: list[planning.ShardRef], ecfg: EncodeConfig, opts: Any, runner: Any, runner_name: str) -> None:
    """Run the Beam job; worker-side failures become one ConvertError with the first shard's message."""
    try:
        run_job(refs, ecfg, opts, runner)
    except (InputError, ConvertError):
        raise
    except Exception as e:  # noqa: BLE001 - Beam wraps worker errors in runner-specific types
        msg = error_from(e)
        if msg is None:
            last = str(e).strip().splitlines()[-1] if str(e).strip() else type(e).__name__
            raise ConvertError(f"Beam pipeline failed ({runner_name}): {last}") from e
        raise ConvertError(msg) from e
    errors = worker_errors(ecfg.tmp_dir)
    if errors:
        raise ConvertError(errors[0])


def _metadata(cfg: ConvertConfig, prep: Prepared, tmp: str, start: float, runner_name: str) -> Metadata:
    from . import __version__

    label, tasks, specs = prep.label, prep.refs, list(prep.specs)
    stats: dict[tuple[str, int], dict[str, Any]] = {}
    for t in tasks:
        text = publish.read_text(join(tmp, f"{STATS_DIR}/{t.split}-{t.index:05d}.json"))
        if text is None:
            raise ConvertError(f"shard {t.path} was not written (the runner finished without it)")
        stats[(t.split, t.index)] = json.loads(text)
    k = label.num_classes if label is not None else 0
    splits = {}
    for split in SPLITS:
        st = [stats[(t.split, t.index)] for t in tasks if t.split == split]
        if not st:
            continue
        shards = tuple(ShardInfo(s["path"], s["count"], s["bytes"], tuple((s["class_counts"] + [0] * k)[:k]),
                                 s["crc32c"]) for s in st)
        splits[split] = SplitInfo(
            count=sum(s.count for s in shards),
            class_counts=tuple(int(x) for x in np.sum([s.class_counts for s in shards], axis=0)) if k else (),
            shards=shards,
        )
    elapsed = time.time() - start
    rows = sum(s.count for s in splits.values())
    inputs = []
    for i, spec in enumerate(specs):
        found = [file_stat(p) for p in spec.parts or (spec.path,)]
        size, mtime = sum(f[0] for f in found), max(f[1] for f in found)
        inputs.append({
            "path": spec.path, "size": size, **({"files": len(spec.parts)} if spec.parts else {}),
            "rows": sum(t.count for t in tasks if t.source == i) if cfg.split_inputs else rows,
            "mtime": dt.datetime.fromtimestamp(mtime, dt.timezone.utc).isoformat(),
            **({"split": cfg.source_splits[i]} if cfg.split_inputs else {}),
        })
    source = {
        "inputs": inputs, "path": inputs[0]["path"] if len(inputs) == 1 else [x["path"] for x in inputs],
        "size": sum(x["size"] for x in inputs), "rows": rows, "data": specs[0].data, "label": specs[0].label,
        "id": cfg.id, "group_column": cfg.group_column,
        "split_fractions": None if cfg.split_inputs else list(cfg.split),
        "columns": {c.name: {"kind": c.kind, "column": c.column, **({"files": True} if c.files else {})}
                    for c in prep.columns},
    }
    all_stats = {
        "truncated_sequences": sum(s["truncated_sequences"] for s in stats.values()),
        "truncated_letters": sum(s.get("truncated_letters", 0) for s in stats.values()),
        "unknown_letters": sum(s["unknown_letters"] for s in stats.values()),
        "seconds": round(elapsed, 3), "rows_per_second": round(rows / max(elapsed, 1e-9), 1),
        "write_phase_seconds": round(max(s["finished"] for s in stats.values())
                                     - min(s["started"] for s in stats.values()), 3),
        "runner": runner_name,
    }
    seq = next((j.encoder for j in prep.features if isinstance(j.encoder, SequenceEncoder)), None)
    if seq is not None:
        all_stats.update(max_length=seq.max_length, unknown=seq.unknown)
    meta = Metadata(
        features=tuple(j.encoder.feature(j.name) for j in prep.features), targets=prep.targets, splits=splits,
        stratify=label.name if label is not None else None,
        compression=cfg.compression, seed=cfg.seed, source=source, stats=all_stats,
        tool_version=f"shardkit {__version__}",
        created=dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
    )
    return dataclasses.replace(meta, dataset_id=content_id(meta))
