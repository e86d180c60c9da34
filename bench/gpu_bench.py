"""GPU step time of knot-cnn and protein-cnn fed by shardkit's reader vs by synthetic tensors already on the
device, GPU idle fraction, with and without mixed precision.

Runs the Keras 3 model on the JAX backend (``--backend jax``: tf.data stays on the CPU, Keras hands batches
to JAX) or on the TensorFlow backend where a TensorFlow GPU build exists. Imports nothing beyond numpy,
Keras, TensorFlow and shardkit (no Beam, psutil or matplotlib), so it runs on a bare GPU image::

    python -m bench.gpu_bench --prepare bench/out/gpu-data          # here: convert the inputs (needs Beam)
    KERAS_BACKEND=jax python -m bench.gpu_bench --data bench/out/gpu-data --out gpu.json   # on the GPU box

Prints a markdown table and writes the rows as JSON to ``--out`` (render with ``bench.report --gpu-results``).
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime
import tempfile
import json
import os
import shutil
import statistics
import subprocess
import sys
import threading
import time
from typing import Any

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
MODELS = {"knot-cnn": "knots", "protein-cnn": "proteins"}


def prepare(data_dir: str, n_knots: int = 600, n_proteins: int = 6000) -> dict[str, str]:
    """Convert the built-in knot and protein examples into ``data_dir`` (small enough to carry, ~35 MB)."""
    from . import datasets

    data_dir = os.path.abspath(data_dir)
    cache = os.path.join(data_dir, "src")
    os.makedirs(cache, exist_ok=True)
    made = {"knots": datasets.knots_dataset(cache, n_knots, extra=["--num-shards", "8"], tag="-8"),
            "proteins": datasets.proteins_dataset(cache, n_proteins, extra=["--num-shards", "4"], tag="-4")}
    out = {}
    for name, path in made.items():
        dest = os.path.join(data_dir, name)
        if not os.path.exists(dest):
            shutil.copytree(path, dest)
        out[name] = dest
    shutil.rmtree(cache, ignore_errors=True)
    return out


def tiled(dataset_dir: str, min_train: int, dest_root: str) -> tuple[str, int]:
    """A view of a (carried, small) dataset whose train split lists each real shard file k times (symlinks,
    counts scaled in its metadata.json) so that one epoch holds >= ``min_train`` examples, like a real data
    set: otherwise the reader's per-epoch start (shuffle-buffer fill) would recur every few steps.
    Returns (path, k); k == 1 returns the dataset itself."""
    from shardkit import spec

    meta = spec.read_metadata(dataset_dir)
    train = meta.splits["train"]
    k = max(1, -(-min_train // max(1, train.count)))
    if k == 1:
        return dataset_dir, 1
    dest = os.path.join(dest_root, f"{os.path.basename(os.path.normpath(dataset_dir))}-x{k}")
    if os.path.exists(os.path.join(dest, spec.METADATA_FILE)):
        return dest, k
    splits = {}
    for name, split in meta.splits.items():
        copies = k if name == "train" else 1
        total = len(split.shards) * copies
        shards = []
        for c in range(copies):
            for i, shard in enumerate(split.shards):
                rel = spec.shard_name(name, c * len(split.shards) + i, total, meta.compression)
                os.makedirs(os.path.dirname(os.path.join(dest, rel)), exist_ok=True)
                os.symlink(os.path.abspath(os.path.join(dataset_dir, shard.path)), os.path.join(dest, rel))
                shards.append(spec.ShardInfo(rel, shard.count, shard.bytes, shard.class_counts))
        splits[name] = spec.SplitInfo(split.count * copies, tuple(c * copies for c in split.class_counts),
                                      tuple(shards))
    spec.write_metadata(dataclasses.replace(meta, splits=splits, source={**meta.source, "tiled_from": dataset_dir,
                                                                         "tiled": k}), dest)
    return dest, k


class GpuUtilSampler:
    """Samples ``nvidia-smi`` GPU utilisation (percent) in the background; silent where there is none."""

    def __init__(self, interval_ms: int = 100):
        self.samples: list[tuple[float, float]] = []
        self._proc = None
        if shutil.which("nvidia-smi"):
            query = ["nvidia-smi", "--query-gpu=utilization.gpu", "--format=csv,noheader,nounits"]
            self._proc = subprocess.Popen([*query, f"--loop-ms={interval_ms}"], stdout=subprocess.PIPE,
                                          stderr=subprocess.DEVNULL, text=True)
            threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        for line in self._proc.stdout:
            try:
                self.samples.append((time.perf_counter(), float(line.split(",")[0])))
            except ValueError:
                pass

    def mean_between(self, start: float, end: float) -> float | None:
        values = [u for t, u in list(self.samples) if start <= t <= end]
        return statistics.fmean(values) if values else None

    def close(self) -> None:
        if self._proc:
            self._proc.terminate()


def _device_name(backend: str) -> str:
    name = "unknown"
    if shutil.which("nvidia-smi"):
        proc = subprocess.run(["nvidia-smi", "--query-gpu=name,memory.total", "--format=csv,noheader"],
                              capture_output=True, text=True)
        if proc.returncode == 0 and proc.stdout.strip():
            name = proc.stdout.strip().splitlines()[0]
    if backend == "jax":
        import jax

        return f"{name} (jax {jax.default_backend()}: {jax.devices()[0].device_kind})"
    import tensorflow as tf

    gpus = tf.config.list_physical_devices("GPU")
    return f"{name} (tensorflow: {len(gpus)} GPU{'s' if len(gpus) != 1 else ''} visible)"


def to_device(x: Any, backend: str) -> Any:
    """Copy one batch to the accelerator so that feeding it costs nothing (the compute-only baseline)."""
    if backend == "jax":
        import jax

        return jax.device_put(x)
    import tensorflow as tf

    device = "/GPU:0" if tf.config.list_logical_devices("GPU") else "/CPU:0"
    with tf.device(device):
        return tf.identity(x)


def _full_batches(ds, batch_size: int):
    import tensorflow as tf

    return ds.repeat().filter(lambda x, y: tf.shape(y)[0] == batch_size)


class _FitClock:
    """Keras callback timing ``model.fit`` from the start of batch ``warmup`` to the end of the epoch (whose
    logs are read back, so queued device work has finished)."""

    def __init__(self, warmup: int):
        import keras

        self.warmup = warmup
        self.start = self.end = 0.0
        self.callback = keras.callbacks.LambdaCallback(on_train_batch_begin=self._begin, on_epoch_end=self._end)

    def _begin(self, batch: int, logs: Any = None) -> None:
        if batch == self.warmup:
            self.start = time.perf_counter()

    def _end(self, epoch: int, logs: Any = None) -> None:
        _ = {k: float(v) for k, v in (logs or {}).items()}
        self.end = time.perf_counter()


def _repeat_batch(batch: Any, n: int):
    """``n`` times the same device-resident batch: model.fit's input when feeding costs nothing."""
    for _ in range(n):
        yield batch


def _timed_steps(model, batches, steps: int) -> list[float]:
    times = []
    for _ in range(steps):
        start = time.perf_counter()
        x, y = next(batches)
        model.train_on_batch(x, y)
        times.append(time.perf_counter() - start)
    return times


def bench_one(model_name: str, dataset_dir: str, precision: str, batch_size: int, steps: int, warmup: int,
              backend: str, util: GpuUtilSampler, tiles: int = 1, sequence_encoding: str = "onehot") -> dict[str, Any]:
    """Median step time fed by synthetic on-device tensors, by the reader (train_on_batch loop and model.fit)."""
    import keras
    import numpy as np

    from shardkit.spec import read_metadata

    from . import api

    keras.mixed_precision.set_global_policy(precision)
    keras.utils.set_random_seed(0)
    opts = {"sequence_encoding": sequence_encoding} if model_name == "protein-cnn" else {}
    model = api.build_compiled_model(model_name, dataset_dir, jit=backend == "jax", **opts)  # JAX: eager without jit
    ds = _full_batches(api.train_reader(dataset_dir, batch_size, **opts), batch_size)

    it = ds.as_numpy_iterator() if backend == "jax" else iter(ds)  # JAX takes numpy batches, as fit hands it
    for _ in range(warmup):
        next(it)
    t0 = time.perf_counter()
    for _ in range(steps):
        next(it)
    reader_only = steps * batch_size / (time.perf_counter() - t0)

    x0, y0 = next(it)
    synthetic = (to_device(np.asarray(x0), backend), to_device(np.asarray(y0), backend))

    def same_batch():
        while True:
            yield synthetic

    syn_iter = same_batch()
    _timed_steps(model, syn_iter, warmup)
    s0 = time.perf_counter()
    syn = _timed_steps(model, syn_iter, steps)
    s1 = time.perf_counter()
    _timed_steps(model, it, warmup)
    r0 = time.perf_counter()
    rd = _timed_steps(model, it, steps)
    r1 = time.perf_counter()

    clock = _FitClock(warmup)
    model.fit(ds, steps_per_epoch=warmup + steps, epochs=1, verbose=0, callbacks=[clock.callback])
    fit_syn = _FitClock(warmup)
    model.fit(_repeat_batch(synthetic, warmup + steps), epochs=1, steps_per_epoch=warmup + steps, verbose=0,
              callbacks=[fit_syn.callback])

    syn_ms, rd_ms = statistics.median(syn) * 1e3, statistics.median(rd) * 1e3
    return {
        "model": model_name,
        "precision": precision,
        "batch_size": batch_size,
        "sequence_encoding": sequence_encoding if model_name == "protein-cnn" else None,
        "train_examples_per_epoch": read_metadata(dataset_dir).splits["train"].count,
        "tiled": tiles,
        "synthetic_step_ms": syn_ms,
        "reader_step_ms": rd_ms,
        "fit_step_ms": (clock.end - clock.start) / steps * 1e3,
        "fit_synthetic_step_ms": (fit_syn.end - fit_syn.start) / steps * 1e3,
        "fit_reader_over_synthetic": (clock.end - clock.start) / (fit_syn.end - fit_syn.start),
        "reader_over_synthetic": rd_ms / syn_ms,
        "idle_fraction": max(0.0, 1 - (s1 - s0) / (r1 - r0)),
        "gpu_util_synthetic": util.mean_between(s0, s1),
        "gpu_util_reader": util.mean_between(r0, r1),
        "reader_only_examples_per_s": reader_only,
        "training_examples_per_s": steps * batch_size / (r1 - r0),
    }


def markdown_table(result: dict[str, Any]) -> str:
    """The rows of a gpu_bench result as a markdown table: model.fit step time fed by shardkit vs by a batch
    already on the device (how training runs), then the synchronous train_on_batch loop and GPU idle/util."""

    def pct(v: Any) -> str:
        return "-" if v is None else f"{v:.0f}%"

    def ms(v: Any) -> str:
        return "-" if v is None else f"{v:.2f}"

    def ratio(v: Any) -> str:
        return "-" if v is None else f"{v:.3f}x"

    lines = ["| Model | Input | Batch | Precision | fit ms/step: synthetic | fit ms/step: shardkit | fit ratio | "
             "train_on_batch ms: synthetic / shardkit | GPU idle (loop) | GPU util synthetic / shardkit | "
             "Reader-only ex/s |",
             "|---|---|---|---|---|---|---|---|---|---|---|"]
    for r in result.get("rows", []):
        enc = r.get("sequence_encoding") or {"knot-cnn": "uint8 image", "protein-cnn": "onehot"}.get(r["model"], "-")
        lines.append(
            f"| {r['model']} | {enc} | {r['batch_size']} | {r['precision']} | {ms(r.get('fit_synthetic_step_ms'))} "
            f"| {ms(r['fit_step_ms'])} | {ratio(r.get('fit_reader_over_synthetic'))} "
            f"| {r['synthetic_step_ms']:.2f} / {r['reader_step_ms']:.2f} | {r['idle_fraction'] * 100:.1f}% "
            f"| {pct(r['gpu_util_synthetic'])} / {pct(r['gpu_util_reader'])} | {r['reader_only_examples_per_s']:,.0f} |")
    return "\n".join(lines)


def load_results(paths: list[str]) -> dict[str, Any]:
    """Several gpu_bench ``--out`` files (batch sizes, input encodings) as one result whose rows carry their settings."""
    runs = []
    for path in paths:
        with open(path, encoding="utf-8") as f:
            runs.append(json.load(f))
    merged = {k: v for k, v in runs[0].items() if k not in ("rows", "batch_size")}
    merged["rows"] = [row for r in runs for row in r.get("rows", [])]
    return merged


def _ensure_shardkit_importable() -> None:
    """Where shardkit is not pip-installed (a bare GPU image), map shardkit.convert/train onto the checkout."""
    try:
        import shardkit.train  # noqa: F401
    except ImportError:
        sys.path.insert(0, REPO)
        import shardkit

        shardkit.__path__.append(REPO)


def _default_backend() -> str:
    import tensorflow as tf

    if tf.config.list_physical_devices("GPU"):
        return "tensorflow"
    try:
        import jax  # noqa: F401

        return "jax"
    except ImportError:
        return "tensorflow"


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.gpu_bench", description=__doc__.splitlines()[0])
    p.add_argument("--prepare", metavar="DIR", help="only convert the inputs into DIR (run where Beam is installed)")
    p.add_argument("--data", default=os.path.join(REPO, "bench", "out", "gpu-data"),
                   help="directory holding knots/ and proteins/ datasets (made with --prepare)")
    p.add_argument("--out", help="write the results JSON here")
    p.add_argument("--backend", choices=("jax", "tensorflow"), default=None,
                   help="Keras backend (default: $KERAS_BACKEND, else tensorflow if it sees a GPU, else jax if "
                        "installed, else tensorflow)")
    p.add_argument("--models", default="knot-cnn,protein-cnn")
    p.add_argument("--precisions", default="float32,mixed_float16")
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--steps", type=int, default=100)
    p.add_argument("--warmup", type=int, default=10)
    p.add_argument("--sequence-encoding", choices=("onehot", "codes"), default="onehot",
                   help="protein-cnn input: float32 one-hot made by the reader, or uint8 codes embedded on the device")
    p.add_argument("--min-epoch", type=int, default=20_000,
                   help="list a small carried train split's shards several times so an epoch has at least this many "
                        "examples (see tiled(); 0: off)")
    args = p.parse_args(argv)
    if args.prepare:
        print(json.dumps(prepare(args.prepare), indent=1))
        return 0

    backend = args.backend or os.environ.get("KERAS_BACKEND") or _default_backend()
    os.environ["KERAS_BACKEND"] = backend  # must precede the first keras import
    _ensure_shardkit_importable()
    from . import api

    util = GpuUtilSampler()
    result: dict[str, Any] = {
        "device": _device_name(backend),
        "backend": backend,
        "date_utc": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        "batch_size": args.batch_size,
        "steps": args.steps,
        "reader_defaults": api.reader_defaults(),
        "rows": [],
        "notes": ("Synthetic = one batch copied to the device once, then `train_on_batch` on it (compute only). "
                  "shardkit = the same `train_on_batch` loop fed by the shuffling shardkit reader (tf.data on the "
                  "CPU; numpy batches handed to Keras, which copies them to the device). Both loops read the loss "
                  "back every step, so their per-step overhead is the same. GPU idle = 1 - (synthetic time / "
                  "shardkit time) over the timed steps; GPU util = nvidia-smi utilization.gpu averaged over each "
                  "loop. model.fit = the reader-fed `fit` (Keras' own prefetch to the device), timed from batch "
                  f"{args.warmup} to the epoch end. Small carried data sets are tiled (each train shard listed "
                  "several times) so that an epoch has >= "
                  f"{args.min_epoch:,} examples; the reader still reads, shuffles and decodes every record."),
    }
    views = tempfile.mkdtemp(prefix="gpu-bench-views-")
    try:
        for model_name in args.models.split(","):
            dataset_dir, tiles = os.path.join(args.data, MODELS[model_name]), 1
            if args.min_epoch:
                dataset_dir, tiles = tiled(dataset_dir, args.min_epoch, views)
            for precision in args.precisions.split(","):
                row = bench_one(model_name, dataset_dir, precision, args.batch_size, args.steps, args.warmup,
                                backend, util, tiles, args.sequence_encoding)
                result["rows"].append(row)
                print(json.dumps(row), flush=True)
    finally:
        util.close()
        shutil.rmtree(views, ignore_errors=True)
    table = markdown_table(result)
    print(table)
    if args.out:
        with open(args.out, "w", encoding="utf-8") as f:
            json.dump(result, f, indent=1)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
