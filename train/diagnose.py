"""``shardkit-train bench DATASET``: is training this model on this dataset input-bound?

Measures, in one process, (a) the reader alone (examples/s of the shuffling training stream with nothing
consuming it), (b) the model's training rate on one batch held in memory (compute only) and (c) training
fed by the reader, then prints a one-line verdict with the numbers: the regime (warm: shards in the page
cache; cold: read from the disk, ``--cold`` evicts them first and also measures the disk's parallel read
rate), whether the model, the reader or the disk is the limit, and the fix.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import time
from dataclasses import asdict, dataclass
from typing import Any, Iterator

from shardkit.train import arguments, readahead
from shardkit.train.options import PRECISIONS, SEQUENCE_ENCODINGS, ReadOptions

FED_OK = 0.9  # reader-fed training at >= 90% of compute-only speed counts as not input-bound
DISK_OK = 0.8  # a cold reader at >= 80% of the disk's parallel read rate: the disk is the limit
WARM = 0.9  # this much of the train shards in the page cache: the warm regime
DISK_SAMPLE = 512 << 20  # bytes of train shards read to measure the disk
BATCH_SIZE, STEPS, WARMUP = 64, 20, 3  # defaults of ``diagnose`` and of the command line


@dataclass(frozen=True)
class Diagnosis:
    """The three rates (examples/s) and what they mean."""

    dataset: str
    model: str
    batch_size: int
    steps: int
    reader_examples_per_s: float
    compute_examples_per_s: float
    fed_examples_per_s: float
    regime: str = "warm"  # warm | cold | partly cached
    resident_fraction: float = 1.0  # of the train shards, in the page cache when the reader started
    disk_examples_per_s: float | None = None  # parallel sequential reads of the train shards (cold only)
    readahead_mb: float = ReadOptions.readahead_mb
    train_shards: int = 0
    cycle_length: int | None = ReadOptions.cycle_length

    @property
    def fed_fraction(self) -> float:
        """Reader-fed training speed as a fraction of compute-only speed."""
        return self.fed_examples_per_s / self.compute_examples_per_s

    @property
    def input_bound(self) -> bool:
        return self.reader_examples_per_s < self.compute_examples_per_s or self.fed_fraction < FED_OK

    def limit(self) -> tuple[str, str]:
        """What limits training (the model, the CPU, the disk or the reader) and what to do about it."""
        r, disk, cycle = self.reader_examples_per_s, self.disk_examples_per_s, self.cycle_length or 8
        if not self.input_bound:
            return "the model", "the input keeps up; a faster model step (larger batch, --precision, --xla) is the lever"
        if r >= self.compute_examples_per_s:
            return "the CPU, shared by reading and training", "give the job more CPU cores"
        if disk and r >= DISK_OK * disk:
            return (f"the disk (the reader gets {r / disk:.0%} of its {disk:,.0f} ex/s)",
                    "faster storage, or a dataset that fits in the page cache")
        if 0 < self.train_shards < cycle:
            return ("the reader", f"add shards: the train split has {self.train_shards}, fewer than the {cycle} read "
                                  f"at once (shardkit-convert --num-shards {cycle} or more)")
        if self.regime != "warm":
            of_disk = f" ({r / disk:.0%} of the disk's {disk:,.0f} ex/s)" if disk else ""
            return f"the reader{of_disk}", f"raise --readahead-mb (now {self.readahead_mb:g})"
        return "the reader", f"raise --cycle-length (now {cycle}) or give the job more CPU cores"

    def verdict(self) -> str:
        """One line: input-bound or not, the numbers that say so, the regime measured, the limit and its fix."""
        r, c, f = self.reader_examples_per_s, self.compute_examples_per_s, self.fed_examples_per_s
        fed = f"reader-fed training runs at {f:,.0f} ex/s ({self.fed_fraction:.0%} of compute-only)"
        regime = {"warm": "warm: shards in the page cache", "cold": "cold: shards read from the disk"}.get(
            self.regime, f"{self.regime}: {self.resident_fraction:.0%} of the train shards in the page cache")
        limit, fix = self.limit()
        tail = f"; measured {regime}; the limit is {limit}: {fix}"
        if r < c:
            return (f"input-bound: the reader delivers {r:,.0f} ex/s but {self.model} could train at {c:,.0f} ex/s; "
                    f"{fed}{tail}")
        if self.fed_fraction < FED_OK:
            return (f"input-bound: the reader alone delivers {r:,.0f} ex/s (>= the {c:,.0f} ex/s {self.model} trains "
                    f"at), but {fed}: reading and training compete for the CPU{tail}")
        return f"not input-bound: the reader delivers {r:,.0f} ex/s, {r / c:.1f}x what {self.model} consumes " \
               f"({c:,.0f} ex/s); {fed}{tail}"


def _full_batches(ds: Any, batch_size: int) -> Iterator[Any]:
    """Endless full batches (a partial last batch would change the step's shapes and force a retrace);
    numpy batches unless Keras runs on TensorFlow, as ``model.fit`` hands them to other backends."""
    import keras

    while True:
        for x, y in (ds if keras.backend.backend() == "tensorflow" else ds.as_numpy_iterator()):
            if int(y.shape[0]) == batch_size:
                yield x, y


def _rate(batch_size: int, steps: int, step: Any) -> float:
    start = time.perf_counter()
    for _ in range(steps):
        step()
    return steps * batch_size / (time.perf_counter() - start)


def diagnose(dataset: str, model_name: str | None = None, batch_size: int = BATCH_SIZE, steps: int = STEPS,
             warmup: int = WARMUP, seed: int = 0, sequence_encoding: str = ReadOptions.sequence_encoding,
             cycle_length: int | None = ReadOptions.cycle_length, precision: str = PRECISIONS[0],
             xla: bool = False, readahead_mb: float = ReadOptions.readahead_mb, cold: bool = False) -> Diagnosis:
    """Measure reader-only, compute-only and reader-fed rates of ``model_name`` on ``dataset``'s train split;
    ``cold``: evict its shards from the page cache first, and measure the disk's parallel read rate."""
    import keras
    import tensorflow as tf

    from shardkit.spec import DatasetError
    from shardkit.train import models, strategy
    from shardkit.train import dataset as reader

    ds = reader.open_dataset(dataset)
    if ds.count("train") < batch_size:
        raise DatasetError(f"{dataset}: {ds.count('train')} training records are fewer than one batch of {batch_size}")
    single = len(ds.metadata.features) == 1
    name = model_name or (models.PRESET_FOR_KIND.get(ds.feature.kind, "tabular") if single else "tabular")
    keras.utils.set_random_seed(seed)
    strategy.set_precision(precision)
    options = reader.ReadOptions(sequence_encoding=sequence_encoding, cycle_length=cycle_length,
                                 readahead_mb=readahead_mb)
    model = models.build_model(name, ds.metadata, options, dataset)
    models.check_model(model, ds.metadata, options, dataset)
    models.compile_model(model, ds.metadata, jit=xla)
    per_epoch = reader.training_plan(ds, batch_size).steps_per_epoch
    reader_steps = max(5 * steps, 50)  # cheap, and long enough that batches prefetched meanwhile do not flatter it
    epochs = math.ceil((2 * warmup + steps + reader_steps) / max(1, per_epoch - 1)) + 1
    stream = reader.train_dataset(ds, batch_size, epochs, seed, options=options)
    shards = ds.shard_paths("train")
    disk = _disk_rate(ds, shards) if cold else None
    resident = readahead.resident_fraction(shards)
    regime = "cold" if cold else "warm" if resident >= WARM else "partly cached"

    try:
        batches = _full_batches(stream, batch_size)
        for _ in range(warmup):
            next(batches)
        reader_rate = _rate(batch_size, reader_steps, lambda: next(batches))

        x, y = next(batches)
        for _ in range(warmup):
            model.train_on_batch(x, y)
        compute_rate = _rate(batch_size, steps, lambda: model.train_on_batch(x, y))

        fed = _full_batches(stream, batch_size)

        def fed_step() -> None:
            xb, yb = next(fed)
            model.train_on_batch(xb, yb)

        for _ in range(warmup):
            fed_step()
        fed_rate = _rate(batch_size, steps, fed_step)
    except tf.errors.DataLossError as e:
        raise _damaged(ds, e) from e
    return Diagnosis(dataset, name, batch_size, steps, reader_rate, compute_rate, fed_rate, regime, resident, disk,
                     readahead_mb, len(shards), cycle_length)


def _disk_rate(ds: Any, shards: list[str]) -> float:
    """Examples/s the disk delivers to 8 parallel sequential readers of the train shards (up to ``DISK_SAMPLE``
    bytes of them), evicted before and after."""
    sample, total = [], 0
    for path in shards:
        if total < DISK_SAMPLE:
            sample.append(path)
            total += os.path.getsize(path)
    readahead.evict(shards)
    start = time.perf_counter()
    readahead.parallel_read(sample)
    seconds = time.perf_counter() - start
    readahead.evict(shards)
    per_example = sum(os.path.getsize(p) for p in shards) / max(1, ds.count("train"))
    return total / per_example / seconds


def _damaged(ds: Any, error: Exception) -> Exception:
    """A ``DatasetError`` naming the damaged shard and its first bad record (found by a CRC scan)."""
    from shardkit.spec import DatasetError
    from shardkit.train import opening

    detail = "; ".join(opening.find_corrupt_shards(ds)) or str(error).strip().splitlines()[0]
    return DatasetError(f"bench stopped on a damaged shard: {detail} (shardkit-train verify {ds.path} lists every "
                        "problem; fit --skip-corrupt reads around it)")


def run(args: argparse.Namespace) -> int:
    d = diagnose(args.dataset, args.model, args.batch_size, args.steps, args.warmup, args.seed,
                 args.sequence_encoding, args.cycle_length, args.precision, args.xla, args.readahead_mb, args.cold)
    if args.json:
        print(json.dumps({**asdict(d), "input_bound": d.input_bound, "verdict": d.verdict()}, sort_keys=True))
    else:
        print(d.verdict())
    return 0


def register(subparsers: "argparse._SubParsersAction[argparse.ArgumentParser]") -> argparse.ArgumentParser:
    """Add ``bench DATASET [--model M] [--batch-size B]`` to a ``shardkit-train`` argument parser."""
    p = arguments.dataset_command(subparsers, "bench", "is training input-bound? reader vs model throughput on this "
                                  "dataset", __doc__, run)
    p.add_argument("--model", default=None,
                   help="knot-cnn | protein-cnn | sequence-lstm | pkg.module:build (default: the preset for the kind)")
    p.add_argument("--batch-size", type=arguments.positive_int, default=BATCH_SIZE)
    p.add_argument("--steps", type=arguments.positive_int, default=STEPS, help=f"timed steps per measurement (default {STEPS})")
    p.add_argument("--warmup", type=arguments.non_negative_int, default=WARMUP, help="untimed steps first (tracing, buffers)")
    p.add_argument("--seed", type=arguments.seed, default=0)
    p.add_argument("--sequence-encoding", default=ReadOptions.sequence_encoding, choices=SEQUENCE_ENCODINGS)
    p.add_argument("--cycle-length", type=arguments.cycle_length, default=ReadOptions.cycle_length,
                   help=f"shards read in parallel, or auto (default {ReadOptions.cycle_length or 'auto'})")
    p.add_argument("--precision", default=PRECISIONS[0], choices=PRECISIONS)
    p.add_argument("--xla", action="store_true", help="compile the train step with XLA")
    p.add_argument("--cold", action="store_true",
                   help="evict the dataset's shards from the page cache first (the larger-than-RAM regime) and "
                        "measure the disk's parallel read rate")
    arguments.add_reading_options(p)
    p.add_argument("--json", action="store_true", help="print all numbers and the verdict as JSON")
    return p
