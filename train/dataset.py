"""tf.data readers over a shardkit dataset: exact epochs, deterministic in (seed, epoch), resumable mid-epoch.

Pipeline per epoch (like TFDS's reader): shard files permuted by (seed, epoch) -> parallel, ordered
interleave of ``TFRecordDataset`` s -> shuffle buffer (training only) -> batch the serialized records ->
one vectorised ``parse_example`` per batch -> decode in the graph -> prefetch. Images stay ``uint8``
(rescale inside the model); sequences become one-hot ``float32`` or integer codes for an Embedding.
A dataset of several features or targets yields dicts keyed by their names (``shardkit.train.features``).

Call from your own Keras code::

    inp = training_input("/data/knots", batch_size=64, epochs=10, seed=0)
    model.fit(**inp.fit_kwargs())  # epochs come from training_input: the stream holds exactly that many
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace
from typing import Any, Callable

import numpy as np
import tensorflow as tf

from shardkit import spec
from shardkit.spec import DatasetError
from shardkit.train import features, targets
from shardkit.train.decode import decode_records
from shardkit.train.opening import Dataset, WorkerShard, open_dataset
from shardkit.train.options import AUTOTUNE, SAMPLING_MODES, ReadOptions
from shardkit.train.readahead import ReadAhead
from shardkit.train.staging import STREAMS
from shardkit.train.strategy import shard_policy, worker_of


def steps(count: int, batch_size: int, drop_remainder: bool = False) -> int:
    """Batches in one pass over ``count`` examples."""
    return count // batch_size if drop_remainder else math.ceil(count / batch_size)


def shuffle_buffer_size(ds: Dataset, options: ReadOptions, split: str = "train") -> int:
    """Examples held by the training shuffle buffer: ``shuffle_buffer_mb`` of decoded examples, at most the split."""
    per_example = max(1, sum(f.raw_nbytes for f in ds.metadata.features))
    return int(max(1, min(ds.count(split), options.shuffle_buffer_mb * 2**20 // per_example)))


def decode_batch(ds: Dataset, options: ReadOptions) -> Callable[[tf.Tensor], tuple[Any, Any]]:
    """A graph function: a batch of serialized records -> (x, y), one vectorised parse for the batch
    (``decode.decode_records``), then each feature and target as ``shardkit.train.features`` says."""
    meta = ds.metadata
    assemble = features.assembler(meta, options)

    def decode(serialized: tf.Tensor) -> tuple[Any, Any]:
        return assemble(decode_records(serialized, meta.features, meta.targets))

    return decode


def _file_table(ds: Dataset, split: str) -> tuple[tf.Tensor, tf.Tensor, tf.Tensor]:
    """Paths, record counts and read limits of a split's shards: the limit is the count for a shard read
    only up to its intact prefix (--skip-corrupt), -1 (to the end) for every other shard."""
    paths = ds.shard_paths(split)
    counts = np.asarray(ds.counts[split], np.int64)
    limits = np.asarray([c if p in ds.lost else -1 for p, c in zip(paths, counts)], np.int64)
    return tf.constant(paths), tf.constant(counts), tf.constant(limits)


def _read_ahead(ds: Dataset, options: ReadOptions, lag_records: int = 0) -> ReadAhead | None:
    """The read-ahead of one pipeline (None when ``readahead_mb`` is 0); ``lag_records``: records between the
    interleave and where the pipeline reports them consumed (the shuffle buffer)."""
    if options.readahead_mb <= 0:
        return None
    cache = STREAMS.get(ds.path)
    sizes = {p: s.bytes for split in ds.metadata.splits for p, s in
             zip(ds.shard_paths(split), ds.metadata.splits[split].shards)}
    whole = {"fetch": cache.request, "chunk": max(sizes.values(), default=1)} if cache else {}
    record_bytes = sum(sizes.values()) / max(1, sum(sum(c) for c in ds.counts.values()))
    return ReadAhead(int(options.readahead_mb * 2**20), options.cycle_length or 8, options.block_length, sizes,
                     lag_records, record_bytes=record_bytes, **whole)


def _records(paths: tf.Tensor, counts: tf.Tensor, limits: tf.Tensor, ds: Dataset, options: ReadOptions,
             ahead: ReadAhead | None = None) -> tf.data.Dataset:
    """Records of the given shards (in that order), interleaved in parallel; ``ahead`` is told the order.

    Each shard must yield exactly its count: when its iterator ends with fewer records, or finds one more,
    reading fails (``FailedPreconditionError``, "expected to contain"); ``integrity.read_error`` names the
    shard. The check is a counter in the graph, not a second pass.
    """
    compression = ds.metadata.compression or ""
    cache = STREAMS.get(ds.path)

    def read(path: tf.Tensor, count: tf.Tensor, limit: tf.Tensor) -> tf.data.Dataset:
        records = tf.data.TFRecordDataset(path, compression, options.read_buffer_bytes).take(limit)
        records = records.apply(tf.data.experimental.assert_cardinality(count))
        if cache is None:
            return records
        release = _path_call(cache.release)
        return records.concatenate(tf.data.Dataset.from_tensors(path).map(release).filter(lambda _: False))

    if ahead is None:
        files = tf.data.Dataset.from_tensor_slices((paths, counts, limits))
    else:
        files = tf.data.Dataset.from_tensors((paths, counts, limits)).map(ahead.start_op)
        files = files.flat_map(lambda p, c, lim: tf.data.Dataset.from_tensor_slices((p, c, lim)))
    if cache is not None:  # a bucket dataset: each shard is opened once it has been downloaded
        here = _path_call(cache.ensure)
        files = files.map(lambda p, c, lim: (here(p), c, lim))
    return files.interleave(
        read,
        cycle_length=options.cycle_length or AUTOTUNE,
        block_length=options.block_length,
        num_parallel_calls=options.num_parallel_calls,
        deterministic=options.deterministic,
    )


def _path_call(fn: Callable[[str], Any]) -> Callable[[tf.Tensor], tf.Tensor]:
    """A graph op that calls ``fn(path)`` in Python and passes the path tensor on (the stream cache's hooks)."""
    return lambda p: tf.ensure_shape(tf.py_function(lambda q: (fn(q.numpy().decode()), q)[1], [p], tf.string), [])


def _pin_graph_seed() -> None:
    """Inside a traced dataset function: fix the graph-level seed so op seeds alone (derived from
    (seed, epoch)) decide the order, whatever global seed the caller set."""
    tf.compat.v1.get_default_graph().seed = _GRAPH_SEED


_GRAPH_SEED = 20240607


def epoch_seed(seed: int | tf.Tensor, epoch: int | tf.Tensor) -> tf.Tensor:
    """The stateless seed pair of one epoch: every random choice of that epoch derives from it."""
    return tf.stack([tf.cast(seed, tf.int64), tf.cast(epoch, tf.int64)])


def _permutation(n: int, seed_pair: tf.Tensor) -> tf.Tensor:
    return tf.argsort(tf.random.stateless_uniform([n], seed=seed_pair))


def _scalar_seed(seed_pair: tf.Tensor, salt: int) -> tf.Tensor:
    salted = tf.random.experimental.stateless_fold_in(seed_pair, salt)
    return tf.random.stateless_uniform([], seed=salted, minval=0, maxval=2**31 - 1, dtype=tf.int64)


def fewest_worker_records(ds: Dataset, split: str, worker: WorkerShard) -> int:
    """Fewest records any worker can get in any epoch (files are reassigned each epoch under FILE)."""
    counts = sorted(ds.counts[split])
    if worker.count == 1:
        return sum(counts)
    if worker.policy == "FILE":
        return sum(counts[: len(counts) // worker.count])
    return sum(counts) // worker.count


def train_epoch(
    ds: Dataset,
    epoch: int | tf.Tensor,
    batch_size: int,
    seed: int = 0,
    options: ReadOptions = ReadOptions(),
    sampling: str = "epoch",
    drop_remainder: bool = False,
    worker: WorkerShard = WorkerShard(),
    steps_per_epoch: int | None = None,
) -> tf.data.Dataset:
    """Serialized-record batches of one training epoch, a deterministic function of (seed, epoch).

    Call it inside a dataset function (``train_dataset`` does, via ``flat_map``). Under several workers every worker yields exactly
    ``steps_per_epoch`` full batches of its own records (FILE: whole shards, DATA: every n-th record).
    """
    if sampling not in SAMPLING_MODES:
        raise ValueError(f"sampling must be one of {SAMPLING_MODES}, not {sampling!r}")
    seed_pair = epoch_seed(seed, epoch)
    table = _file_table(ds, "train")
    n_files = len(ds.counts["train"])
    order = _permutation(n_files, seed_pair)
    table = tuple(tf.gather(column, order) for column in table)
    if worker.count > 1 and worker.policy == "FILE":
        table = tuple(column[worker.index :: worker.count] for column in table)
    buffer = shuffle_buffer_size(ds, options)
    ahead = _read_ahead(ds, options, buffer * worker.count)
    records = _records(*table, ds, options, ahead)
    if worker.count > 1 and worker.policy == "DATA":
        records = records.shard(worker.count, worker.index)
    records = records.shuffle(buffer, seed=_scalar_seed(seed_pair, 1), reshuffle_each_iteration=False)
    if sampling != "epoch":
        draws = ds.count("train") // worker.count
        records = _resampled(records, ds, seed_pair, sampling, buffer).take(draws)
    batches = records.batch(batch_size, drop_remainder=drop_remainder or worker.count > 1)
    if ahead is not None:
        batches = ahead.counted(batches, batch_size, worker.count if worker.policy == "DATA" else 1)
    if steps_per_epoch is not None:
        batches = batches.take(steps_per_epoch)
    return batches


def _resampled(records: tf.data.Dataset, ds: Dataset, seed_pair: tf.Tensor, mode: str, buffer: int) -> tf.data.Dataset:
    """Endless draws from a (repeated) shuffled record stream, with stateless per-record randomness.

    ``replacement``: Poisson bootstrap, each record appears Poisson(1) times per pass (the marginal of i.i.d.
    draws with replacement), reshuffled. ``balanced``: each record kept with probability inversely
    proportional to its class frequency (rejection sampling to equal class frequency).
    """
    indexed = records.repeat().enumerate()

    def draw_seed(salt: int, index: tf.Tensor) -> tf.Tensor:
        return tf.random.experimental.stateless_fold_in(tf.random.experimental.stateless_fold_in(seed_pair, salt), index)

    if mode == "replacement":

        def copies(index: tf.Tensor, record: tf.Tensor) -> tf.data.Dataset:
            k = tf.random.stateless_poisson([], draw_seed(4, index), lam=1.0, dtype=tf.int64)
            return tf.data.Dataset.from_tensors(record).repeat(k)

        drawn = indexed.flat_map(copies)
        return drawn.shuffle(buffer, seed=_scalar_seed(seed_pair, 5), reshuffle_each_iteration=False)
    key = targets.require_class(ds.metadata, "--sampling balanced", ds.path, counted=True).name
    class_counts = np.asarray(ds.metadata.splits["train"].class_counts, np.float64)
    ratio = np.where(class_counts > 0, 1.0 / np.maximum(class_counts, 1), 0.0)
    accept = tf.constant((ratio / ratio.max()).astype(np.float32))
    label_only = {key: tf.io.FixedLenFeature([], tf.int64)}

    def keep(index: tf.Tensor, record: tf.Tensor) -> tf.Tensor:
        label = tf.io.parse_single_example(record, label_only)[key]
        return tf.random.stateless_uniform([], draw_seed(3, index)) < tf.gather(accept, label)

    return indexed.filter(keep).map(lambda _index, record: record)


@dataclass(frozen=True)
class TrainingPlan:
    """Numbers that make epochs exact: steps per epoch, examples per epoch, and what a strategy drops."""

    batch_size: int  # global batch
    steps_per_epoch: int
    examples_per_epoch: int
    dropped_per_epoch: int
    last_batch: int  # size of the final (possibly partial) global batch
    validation_steps: int
    workers: int = 1
    policy: str = "FILE"


def training_plan(ds: Dataset, batch_size: int, replicas: int = 1, worker_count: int = 1, policy: str = "FILE") -> TrainingPlan:
    """Steps and per-epoch accounting for a global ``batch_size`` over ``replicas`` and ``worker_count`` workers.

    One worker keeps the partial last batch unless it would leave a replica with no example (then those
    few are dropped and reported); several workers must all run the same number of full steps.
    """
    n = ds.count("train")
    val = ds.count("validation") if "validation" in ds.counts else 0
    if replicas > 1:
        _check_replicas(ds, batch_size, replicas, splits=("validation", "test") if worker_count == 1 else ())
    if worker_count > 1:
        per_worker_batch = batch_size // worker_count
        if per_worker_batch * worker_count != batch_size:
            raise ValueError(f"global batch {batch_size} is not divisible by {worker_count} workers")
        fewest = fewest_worker_records(ds, "train", WorkerShard(0, worker_count, policy))
        s = fewest // per_worker_batch
        if s == 0:
            raise DatasetError(f"{ds.path}: too few training records ({fewest} per worker) for batch {per_worker_batch}")
        seen = s * batch_size
        return TrainingPlan(batch_size, s, seen, n - seen, batch_size, steps(val, per_worker_batch), worker_count, policy)
    remainder = n % batch_size
    drop = replicas > 1 and 0 < remainder < replicas
    s = steps(n, batch_size, drop_remainder=drop)
    if s == 0:
        raise DatasetError(f"{ds.path}: {n} training records are fewer than one batch of {batch_size}")
    seen = n - (remainder if drop else 0)
    last = batch_size if remainder == 0 or drop else remainder
    val_steps = steps(val, eval_batch_size(val, batch_size, replicas))
    return TrainingPlan(batch_size, s, seen, n - seen, last, val_steps, 1, policy)


def _check_replicas(ds: Dataset, batch_size: int, replicas: int, splits: tuple[str, ...]) -> None:
    """Every replica must get at least one example of every batch, in training and in evaluating ``splits``
    (under several workers each worker evaluates whole splits on its own, so none are checked)."""
    if batch_size < replicas:
        raise ValueError(
            f"--batch-size {batch_size} is smaller than the {replicas} replicas, so a replica would get no example; "
            f"use a batch of at least {replicas}"
        )
    for split in splits:
        count = ds.count(split) if split in ds.counts else 0
        if 0 < count < replicas:
            raise DatasetError(
                f"{ds.path}: the {split} split has {count} example(s), fewer than the {replicas} replicas, so a replica "
                f"would evaluate nothing; use fewer replicas (--strategy one) or convert with a larger {split} split"
            )


def eval_batch_size(count: int, batch_size: int, replicas: int = 1) -> int:
    """The batch to evaluate a ``count``-example split with over ``replicas`` replicas: ``batch_size`` unless the
    last batch would leave a replica without an example (a model fails on an empty batch); then the nearest
    batch, first below ``batch_size`` and at least ``replicas``, then above it, whose last batch is empty or
    has an example for every replica."""
    if replicas <= 1 or count < replicas:
        return batch_size
    below = range(batch_size, replicas - 1, -1)
    above = range(batch_size + 1, count + 1)
    return next(b for b in (*below, *above) if count % b == 0 or count % b >= replicas)


def _decoded_stream(batches: tf.data.Dataset, ds: Dataset, options: ReadOptions, cardinality: int | None) -> tf.data.Dataset:
    """Record batches decoded into (x, y), with their known length, our own sharding and a prefetch."""
    out = batches.map(decode_batch(ds, options), num_parallel_calls=options.num_parallel_calls, deterministic=options.deterministic)
    if cardinality is not None:
        out = out.apply(tf.data.experimental.assert_cardinality(cardinality))
    tf_options = tf.data.Options()
    tf_options.deterministic = options.deterministic
    tf_options.experimental_distribute.auto_shard_policy = tf.data.experimental.AutoShardPolicy.OFF
    return out.with_options(tf_options).prefetch(AUTOTUNE)


def train_dataset(
    ds: Dataset | str,
    batch_size: int,
    epochs: int,
    seed: int = 0,
    start_epoch: int = 0,
    start_step: int = 0,
    options: ReadOptions = ReadOptions(),
    sampling: str = "epoch",
    replicas: int = 1,
    worker: WorkerShard = WorkerShard(),
) -> tf.data.Dataset:
    """Decoded training batches for epochs ``start_epoch..epochs-1`` back to back, the first one starting at
    ``start_step``. Fit it with ``steps_per_epoch=training_plan(...).steps_per_epoch`` (``training_input`` does); the
    stream's own cardinality is left unknown so Keras never re-opens it after the last epoch.

    Under several workers ``batch_size`` is the global batch; each worker yields its per-worker batches.
    """
    ds = open_dataset(ds, options.skip_corrupt) if isinstance(ds, str) else ds
    p = training_plan(ds, batch_size, replicas, worker.count, worker.policy)
    local_batch = batch_size // worker.count
    drop = p.dropped_per_epoch > 0
    s = p.steps_per_epoch
    if not 0 <= start_step <= s or not 0 <= start_epoch <= epochs:
        raise ValueError(f"start position epoch {start_epoch} step {start_step} is outside {epochs} epochs of {s} steps")

    def one_epoch(epoch: tf.Tensor) -> tf.data.Dataset:
        _pin_graph_seed()
        batches = train_epoch(ds, epoch, local_batch, seed, options, sampling, drop, worker, s)
        return batches.skip(tf.where(epoch == start_epoch, tf.constant(start_step, tf.int64), 0))

    stream = tf.data.Dataset.range(start_epoch, epochs).flat_map(one_epoch)
    return _decoded_stream(stream, ds, options, None)


def eval_dataset(
    ds: Dataset | str, split: str, batch_size: int, options: ReadOptions = ReadOptions()
) -> tf.data.Dataset:
    """The whole split once, in metadata order, unshuffled, partial last batch kept; cardinality known."""
    ds = open_dataset(ds, options.skip_corrupt) if isinstance(ds, str) else ds
    if split not in ds.counts:
        raise DatasetError(f"{ds.path}: no split {split!r}; splits are {sorted(ds.counts)}")
    ordered = replace(options, deterministic=True)
    ahead = _read_ahead(ds, ordered)
    records = _records(*_file_table(ds, split), ds, ordered, ahead).batch(batch_size)
    if ahead is not None:
        records = ahead.counted(records, batch_size)
    out = _decoded_stream(records, ds, ordered, steps(ds.count(split), batch_size))
    if options.cache:
        out = out.cache().apply(tf.data.experimental.assert_cardinality(steps(ds.count(split), batch_size)))
        # Fill the cache with one whole pass now: Keras stops after the split's last batch without reading the
        # end of the stream, and tf.data discards (and warns about) a cache that was never completed.
        if tf.executing_eagerly():
            out.reduce(0, lambda n, _: n)
    return out


@dataclass
class TrainingInput:
    """Everything ``model.fit`` needs to run exact epochs: the stream, its steps and the validation split."""

    dataset: Dataset
    plan: TrainingPlan
    train: tf.data.Dataset | Any
    validation: tf.data.Dataset | Any | None
    start_epoch: int = 0
    start_step: int = 0
    epochs: int = 0

    def fit_kwargs(self) -> dict[str, Any]:
        """``model.fit``'s input arguments, epochs included: a stream built for ``epochs`` epochs must be fit
        for exactly that many, or Keras runs out of data (more) or stops early (fewer)."""
        kwargs: dict[str, Any] = {
            "x": self.train,
            "epochs": self.epochs,
            "steps_per_epoch": self.plan.steps_per_epoch,
            "initial_epoch": self.start_epoch,
            "shuffle": False,
        }
        if self.validation is not None:
            kwargs["validation_data"] = self.validation  # known cardinality: whole split, re-read every epoch
        return kwargs


def training_input(
    path: str | Dataset,
    batch_size: int,
    epochs: int,
    seed: int = 0,
    options: ReadOptions = ReadOptions(),
    sampling: str = "epoch",
    start_epoch: int = 0,
    start_step: int = 0,
    strategy: tf.distribute.Strategy | None = None,
    policy: str | None = None,
) -> TrainingInput:
    """Training stream and validation split for ``model.fit(**inp.fit_kwargs())``.

    With a multi-worker ``strategy`` every worker builds its own shard of the input (``policy`` FILE when
    there are at least as many shards as workers, else DATA) and evaluates the whole validation split.
    """
    ds = open_dataset(path, options.skip_corrupt) if isinstance(path, str) else path
    strategy = strategy or tf.distribute.get_strategy()
    workers = worker_of(strategy).count
    policy = policy or shard_policy(len(ds.counts["train"]), workers)
    p = training_plan(ds, batch_size, strategy.num_replicas_in_sync, workers, policy)
    has_val = "validation" in ds.counts and ds.count("validation") > 0
    if workers == 1:
        replicas = strategy.num_replicas_in_sync
        train = train_dataset(ds, batch_size, epochs, seed, start_epoch, start_step, options, sampling, replicas)
        val_batch = eval_batch_size(ds.count("validation"), batch_size, replicas) if has_val else batch_size
        val = eval_dataset(ds, "validation", val_batch, options) if has_val else None
        return TrainingInput(ds, p, train, val, start_epoch, start_step, epochs)

    def per_worker_train(ctx: tf.distribute.InputContext) -> tf.data.Dataset:
        shard = WorkerShard(ctx.input_pipeline_id, ctx.num_input_pipelines, policy)
        stream = train_dataset(ds, batch_size, epochs, seed, start_epoch, start_step, options, sampling, 1, shard)
        per_replica = ctx.get_per_replica_batch_size(batch_size)
        if per_replica == batch_size // workers:
            return stream
        return stream.unbatch().batch(per_replica, drop_remainder=True)

    def per_worker_val(ctx: tf.distribute.InputContext) -> tf.data.Dataset:
        return eval_dataset(ds, "validation", ctx.get_per_replica_batch_size(batch_size), options)

    train = strategy.distribute_datasets_from_function(per_worker_train)
    val = strategy.distribute_datasets_from_function(per_worker_val) if has_val else None
    return TrainingInput(ds, p, train, val, start_epoch, start_step, epochs)


def read_row_ids(ds: Dataset | str, split: str) -> np.ndarray:
    """Row ids of a split in metadata order (for checks and tests)."""
    ds = open_dataset(ds) if isinstance(ds, str) else ds
    records = _records(*_file_table(ds, split), ds, ReadOptions()).batch(4096)
    key = {spec.ROW_ID_KEY: tf.io.FixedLenFeature([], tf.int64)}
    parts = [tf.io.parse_example(b, key)[spec.ROW_ID_KEY].numpy() for b in records]
    return np.concatenate(parts) if parts else np.zeros(0, np.int64)
