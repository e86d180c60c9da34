"""GPU section: knot-cnn and protein-cnn step time fed by shardkit's reader vs by one batch already on the device,
per batch size, precision and steps per execution, on the Keras backend that has the GPU (``pick_backend``)."""

from __future__ import annotations

import dataclasses
import importlib
import itertools
import os
import shutil
import statistics
import subprocess
import tempfile
import time
from typing import Any

from shardkit import spec

from . import inputs
from .measure import now_utc, timed
from .reading import reader_defaults


def datasets(cache: str, n_knots: int, n_proteins: int) -> dict[str, str]:
    """The two converted inputs, by model (converted where Beam is installed, then carried to the GPU machine)."""
    return {"knot-cnn": inputs.dataset(cache, "knots", n_knots, "--num-shards", "8"),
            "protein-cnn": inputs.dataset(cache, "proteins", n_proteins, "--num-shards", "4")}


def tiled(dataset_dir: str, min_train: int, dest_root: str) -> tuple[str, int]:
    """(path, k): a view of a small dataset whose train split lists each shard k times (symlinks), so that an epoch
    holds >= ``min_train`` examples and the reader's per-epoch start does not recur every few steps."""
    meta = spec.read_metadata(dataset_dir)
    k = max(1, -(-min_train // max(1, meta.splits["train"].count)))
    dest = os.path.join(dest_root, f"{os.path.basename(os.path.normpath(dataset_dir))}-x{k}")
    if k == 1 or os.path.exists(os.path.join(dest, spec.METADATA_FILE)):
        return (dataset_dir, 1) if k == 1 else (dest, k)
    splits = {}
    for name, split in meta.splits.items():
        copies = k if name == "train" else 1
        total, shards = len(split.shards) * copies, []
        for c in range(copies):
            for i, shard in enumerate(split.shards):
                rel = spec.shard_name(name, c * len(split.shards) + i, total, meta.compression)
                os.makedirs(os.path.dirname(os.path.join(dest, rel)), exist_ok=True)
                os.symlink(os.path.abspath(os.path.join(dataset_dir, shard.path)), os.path.join(dest, rel))
                shards.append(dataclasses.replace(shard, path=rel))
        splits[name] = spec.SplitInfo(split.count * copies, tuple(c * copies for c in split.class_counts),
                                      tuple(shards))
    source = {**meta.source, "tiled_from": dataset_dir, "tiled": k}
    spec.write_metadata(dataclasses.replace(meta, splits=splits, source=source), dest)
    return dest, k


def pick_backend() -> str:
    """$KERAS_BACKEND, else jax or torch where it has a GPU, else tensorflow (call before Keras loads)."""
    for name, has_gpu in (("jax", lambda m: m.default_backend() != "cpu"), ("torch", lambda m: m.cuda.is_available())):
        try:
            if not os.environ.get("KERAS_BACKEND") and has_gpu(importlib.import_module(name)):
                return name
        except ImportError:
            continue
    return os.environ.get("KERAS_BACKEND", "tensorflow")


def device_name(backend: str) -> str:
    query = ["nvidia-smi", "--query-gpu=name,memory.total", "--format=csv,noheader"]
    smi = subprocess.run(query, capture_output=True, text=True).stdout.strip() if shutil.which("nvidia-smi") else ""
    return f"{smi.splitlines()[0] if smi else 'no nvidia-smi'} (Keras backend {backend})"


def to_device(x: Any, backend: str) -> Any:
    """Copy one batch to the accelerator so that feeding it costs nothing (the compute-only baseline): JAX and
    torch tensors are made on the backend's default device, TensorFlow's are placed on the GPU by hand."""
    import keras
    import tensorflow as tf

    if backend != "tensorflow":
        return keras.ops.convert_to_tensor(x)

    with tf.device("/GPU:0" if tf.config.list_logical_devices("GPU") else "/CPU:0"):
        return tf.identity(x)


def fit_step_seconds(model: Any, data: Any, warmup: int, steps: int) -> float:
    """``model.fit`` time per step from the start of step ``warmup`` to the end of the epoch (both numbers are
    multiples of the model's steps per call)."""
    import keras

    marks: dict[str, float] = {}

    def begin(batch: int, logs: Any = None) -> None:
        if batch == warmup:
            marks["start"] = time.perf_counter()

    def end(epoch: int, logs: Any = None) -> None:
        _ = [float(v) for v in (logs or {}).values()]  # reading the logs back waits for queued device work
        marks["end"] = time.perf_counter()

    callback = keras.callbacks.LambdaCallback(on_train_batch_begin=begin, on_epoch_end=end)
    model.fit(data, steps_per_epoch=warmup + steps, epochs=1, verbose=0, callbacks=[callback], shuffle=False)
    return (marks["end"] - marks["start"]) / steps


def _timed_steps(model: Any, batches: Any, warmup: int, steps: int) -> tuple[list[float], float, float]:
    """``train_on_batch`` over ``warmup`` then ``steps`` batches: (seconds of each timed step, start, end)."""
    times, start = [], 0.0
    for i in range(warmup + steps):
        t = time.perf_counter()
        start = t if i == warmup else start
        model.train_on_batch(*next(batches))
        times.append(time.perf_counter() - t)
    return times[warmup:], start, time.perf_counter()


def bench_one(model_name: str, dataset_dir: str, precision: str, batch_size: int, steps: int, warmup: int,
              backend: str, tiles: int, sequence_encoding: str, steps_per_execution: list) -> list[dict[str, Any]]:
    """Median step time fed by one batch on the device and by the reader: a train_on_batch loop, and model.fit at
    each of ``steps_per_execution`` (``auto`` as ``shardkit-train fit`` picks it, from the loop's step time)."""
    import keras
    import numpy as np
    import tensorflow as tf

    from shardkit.train.dataset import ReadOptions, train_dataset
    from shardkit.train import keras_compat, pacing, strategy
    from shardkit.train.models import build_model, compile_model

    keras.mixed_precision.set_global_policy(precision)
    keras.utils.set_random_seed(0)
    options = ReadOptions(**({"sequence_encoding": sequence_encoding} if model_name == "protein-cnn" else {}))
    meta = spec.read_metadata(dataset_dir)
    model = build_model(model_name, meta, options)
    compile_model(model, meta, jit=backend == "jax")  # JAX would run eagerly without jit
    ds = train_dataset(dataset_dir, batch_size, 1, 0, options=options).repeat()
    ds = ds.filter(lambda x, y: tf.shape(y)[0] == batch_size)  # full batches only
    it = ds.as_numpy_iterator() if backend != "tensorflow" else iter(ds)  # numpy batches, as fit hands them over
    list(itertools.islice(it, warmup))
    reader_only = steps * batch_size / timed(list, itertools.islice(it, steps))
    synthetic = tuple(to_device(np.asarray(v), backend) for v in next(it))
    syn, s0, s1 = _timed_steps(model, itertools.repeat(synthetic), warmup, steps)
    rd, r0, r1 = _timed_steps(model, it, warmup, steps)
    syn_ms, rd_ms = statistics.median(syn) * 1e3, statistics.median(rd) * 1e3
    base = {
        "model": model_name, "precision": precision, "batch_size": batch_size,
        "sequence_encoding": sequence_encoding if model_name == "protein-cnn" else None,
        "train_examples_per_epoch": meta.splits["train"].count, "tiled": tiles,
        "synthetic_step_ms": syn_ms, "reader_step_ms": rd_ms, "reader_over_synthetic": rd_ms / syn_ms,
        "idle_fraction": max(0.0, 1 - (s1 - s0) / (r1 - r0)),
        "reader_only_examples_per_s": reader_only, "training_examples_per_s": steps * batch_size / (r1 - r0),
    }
    keras_compat.exact_last_execution()
    rows = []
    for asked in steps_per_execution:
        n = pacing.resolve(asked, backend, strategy.has_accelerator(backend), lambda: syn_ms / 1e3, 1_000)
        compile_model(model, meta, jit=backend == "jax", quiet=True, steps_per_execution=n)
        fed = fit_step_seconds(model, ds, warmup * n, steps * n)  # as many calls as steps at one step per call
        still = fit_step_seconds(model, (synthetic for _ in range((warmup + steps) * n)), warmup * n, steps * n)
        rows.append({**base, "steps_per_execution": asked, "steps_per_call": n, "fit_step_ms": fed * 1e3,
                     "fit_synthetic_step_ms": still * 1e3, "fit_reader_over_synthetic": fed / still})
    return rows


def measure(cache: str, n_knots: int, n_proteins: int, steps: int, warmup: int, min_epoch: int, backend: str,
            precisions: list[str], batch_sizes: list[int], sequence_encoding: str,
            steps_per_execution: list) -> dict[str, Any]:
    """knot-cnn and protein-cnn x ``precisions`` x ``batch_sizes`` x ``steps_per_execution``, train splits tiled
    to >= ``min_epoch`` examples."""
    from shardkit.train.strategy import configure_devices

    configure_devices(0, backend)  # on JAX and torch TensorFlow (tf.data) keeps off the GPU
    result: dict[str, Any] = {
        "device": device_name(backend), "backend": backend, "date_utc": now_utc(), "steps": steps,
        "reader_defaults": reader_defaults(), "rows": [],
    }
    with tempfile.TemporaryDirectory(prefix="gpu-bench-views-") as views:
        for model_name, path in datasets(cache, n_knots, n_proteins).items():
            path, tiles = tiled(path, min_epoch, views)
            for precision, batch_size in itertools.product(precisions, batch_sizes):
                result["rows"] += bench_one(model_name, path, precision, batch_size, steps, warmup, backend, tiles,
                                            sequence_encoding, steps_per_execution)
    return result
