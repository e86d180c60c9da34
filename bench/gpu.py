"""GPU section: knot-cnn and protein-cnn step time fed by shardkit's reader vs by one batch already on the
device, per precision, on Keras' JAX or TensorFlow backend. Needs only numpy, Keras, TensorFlow and shardkit
(a bare GPU image); its inputs are converted beforehand where Beam is installed (``datasets``)."""

from __future__ import annotations

import dataclasses
import os
import shutil
import statistics
import subprocess
import tempfile
import threading
import time
from typing import Any

from .measure import now_utc


def datasets(cache: str, n_knots: int, n_proteins: int) -> dict[str, str]:
    """The two converted inputs, by model (converted where Beam is installed, then carried to the GPU machine)."""
    from . import inputs

    return {"knot-cnn": inputs.dataset(cache, "knots", n_knots, "--num-shards", "8"),
            "protein-cnn": inputs.dataset(cache, "proteins", n_proteins, "--num-shards", "4")}


def tiled(dataset_dir: str, min_train: int, dest_root: str) -> tuple[str, int]:
    """(path, k): a view of a small dataset whose train split lists each shard k times (symlinks), so that an epoch
    holds >= ``min_train`` examples and the reader's per-epoch start does not recur every few steps."""
    from shardkit import spec

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


class GpuUtilSampler:
    """Samples ``nvidia-smi`` GPU utilisation (percent) in the background; silent where there is none."""

    def __init__(self, interval_ms: int = 100):
        self.samples: list[tuple[float, float]] = []
        self._proc = None
        if shutil.which("nvidia-smi"):
            query = ["--query-gpu=utilization.gpu", "--format=csv,noheader,nounits", f"--loop-ms={interval_ms}"]
            self._proc = subprocess.Popen(["nvidia-smi", *query], stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
                                          text=True)
            threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        for line in self._proc.stdout:
            if line.strip().replace(".", "", 1).isdigit():
                self.samples.append((time.perf_counter(), float(line)))

    def mean_between(self, start: float, end: float) -> float | None:
        values = [u for t, u in list(self.samples) if start <= t <= end]
        return statistics.fmean(values) if values else None

    def close(self) -> None:
        if self._proc:
            self._proc.terminate()


def device_name(backend: str) -> str:
    query = ["nvidia-smi", "--query-gpu=name,memory.total", "--format=csv,noheader"]
    smi = subprocess.run(query, capture_output=True, text=True).stdout.strip() if shutil.which("nvidia-smi") else ""
    return f"{smi.splitlines()[0] if smi else 'no nvidia-smi'} (Keras backend {backend})"


def to_device(x: Any, backend: str) -> Any:
    """Copy one batch to the accelerator so that feeding it costs nothing (the compute-only baseline)."""
    if backend == "jax":
        import jax

        return jax.device_put(x)
    import tensorflow as tf

    with tf.device("/GPU:0" if tf.config.list_logical_devices("GPU") else "/CPU:0"):
        return tf.identity(x)


def fit_seconds(model: Any, data: Any, warmup: int, steps: int) -> float:
    """``model.fit`` time from the start of batch ``warmup`` to the end of the epoch."""
    import keras

    marks: dict[str, float] = {}

    def begin(batch: int, logs: Any = None) -> None:
        if batch == warmup:
            marks["start"] = time.perf_counter()

    def end(epoch: int, logs: Any = None) -> None:
        _ = [float(v) for v in (logs or {}).values()]  # reading the logs back waits for queued device work
        marks["end"] = time.perf_counter()

    callback = keras.callbacks.LambdaCallback(on_train_batch_begin=begin, on_epoch_end=end)
    model.fit(data, steps_per_epoch=warmup + steps, epochs=1, verbose=0, callbacks=[callback])
    return marks["end"] - marks["start"]


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
              backend: str, util: GpuUtilSampler, tiles: int = 1, sequence_encoding: str = "onehot") -> dict[str, Any]:
    """Median step time fed by one batch on the device and by the reader: a train_on_batch loop and model.fit."""
    import itertools

    import keras
    import numpy as np
    import tensorflow as tf

    from shardkit.spec import read_metadata
    from shardkit.train.dataset import ReadOptions, train_dataset
    from shardkit.train.models import build_model, compile_model

    keras.mixed_precision.set_global_policy(precision)
    keras.utils.set_random_seed(0)
    options = ReadOptions(**({"sequence_encoding": sequence_encoding} if model_name == "protein-cnn" else {}))
    meta = read_metadata(dataset_dir)
    model = build_model(model_name, meta, options)
    compile_model(model, meta, jit=backend == "jax")  # JAX would run eagerly without jit
    ds = train_dataset(dataset_dir, batch_size, 1, 0, options=options).repeat()
    ds = ds.filter(lambda x, y: tf.shape(y)[0] == batch_size)  # full batches only
    it = ds.as_numpy_iterator() if backend == "jax" else iter(ds)  # JAX takes numpy batches, as fit hands it
    for _ in range(warmup):
        next(it)
    t0 = time.perf_counter()
    for _ in range(steps):
        next(it)
    reader_only = steps * batch_size / (time.perf_counter() - t0)
    synthetic = tuple(to_device(np.asarray(v), backend) for v in next(it))
    syn, s0, s1 = _timed_steps(model, itertools.repeat(synthetic), warmup, steps)
    rd, r0, r1 = _timed_steps(model, it, warmup, steps)
    fed = fit_seconds(model, ds, warmup, steps)
    still = fit_seconds(model, (synthetic for _ in range(warmup + steps)), warmup, steps)
    syn_ms, rd_ms = statistics.median(syn) * 1e3, statistics.median(rd) * 1e3
    return {
        "model": model_name, "precision": precision, "batch_size": batch_size,
        "sequence_encoding": sequence_encoding if model_name == "protein-cnn" else None,
        "train_examples_per_epoch": meta.splits["train"].count, "tiled": tiles,
        "synthetic_step_ms": syn_ms, "reader_step_ms": rd_ms,
        "fit_step_ms": fed / steps * 1e3, "fit_synthetic_step_ms": still / steps * 1e3,
        "fit_reader_over_synthetic": fed / still, "reader_over_synthetic": rd_ms / syn_ms,
        "idle_fraction": max(0.0, 1 - (s1 - s0) / (r1 - r0)),
        "gpu_util_synthetic": util.mean_between(s0, s1), "gpu_util_reader": util.mean_between(r0, r1),
        "reader_only_examples_per_s": reader_only, "training_examples_per_s": steps * batch_size / (r1 - r0),
    }


def measure(cache: str, backend: str, precisions: list[str], batch_size: int, sequence_encoding: str, n_knots: int,
            n_proteins: int, steps: int, warmup: int, min_epoch: int) -> dict[str, Any]:
    """knot-cnn and protein-cnn x ``precisions`` on ``datasets``, train splits tiled to >= ``min_epoch`` examples."""
    from .reading import reader_defaults

    util = GpuUtilSampler()
    result: dict[str, Any] = {
        "device": device_name(backend), "backend": backend, "date_utc": now_utc(), "steps": steps,
        "reader_defaults": reader_defaults(), "rows": [],
    }
    views = tempfile.mkdtemp(prefix="gpu-bench-views-")
    try:
        for model_name, path in datasets(cache, n_knots, n_proteins).items():
            path, tiles = tiled(path, min_epoch, views)
            for precision in precisions:
                result["rows"].append(bench_one(model_name, path, precision, batch_size, steps, warmup, backend,
                                                util, tiles, sequence_encoding))
    finally:
        util.close()
        shutil.rmtree(views, ignore_errors=True)
    return result
