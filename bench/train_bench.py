"""Trainer benchmark: shardkit's reader and reader-fed training against the seed-000 ways and in-memory arrays.

    python -m bench.train_bench                 # CPU tables (markdown), medians of repeats, one run
    python -m bench.train_bench --device-friendly   # knot-cnn step time: shardkit-fed vs synthetic tensors

Tables:
1. Reader throughput over one epoch of knot images (examples/s, MB/s of decoded uint8 pixels): shardkit's
   training reader (global shuffle: file order + buffer, decoded in the graph, uint8) vs the seed-000 generator
   over PyTables slices (/255 in numpy, NO shuffle) vs a correctly shuffled keras.utils.PyDataset over the HDF5
   vs shuffled batches of an in-memory numpy array.
2. Whole-epoch training time on CPU (knot-cnn, protein-cnn) fed by shardkit vs by in-memory arrays
   (``model.fit(x, y, shuffle=True)``), each in a fresh process, with that process's peak RSS.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from typing import Any

import numpy as np

from bench import api
from bench.measure import emit_result, median, python_module, run_measured

CACHE = os.environ.get("SHARDKIT_BENCH_CACHE", "/tmp/shardkit-bench-cache") + "/train"


# ---------------------------------------------------------------- inputs


def knots(n_per_class: int, size: int) -> tuple[str, str]:
    """(PyTables source, converted dataset) of class-sorted knots, built once in the cache."""
    from shardkit.convert.cli import main as convert
    from shardkit.convert.examples import write_knots

    base = os.path.join(CACHE, f"knots-{n_per_class}-{size}")
    h5, out = base + ".h5", base
    if not os.path.exists(h5):
        os.makedirs(CACHE, exist_ok=True)
        write_knots(h5 + ".tmp", n_per_class, size=size, seed=0)
        os.replace(h5 + ".tmp", h5)
    if not os.path.exists(os.path.join(out, "metadata.json")):
        args = [h5, "--out", out, "--kind", "image", "--data", "/train_data", "--label", "/train_label",
                "--image-shape", f"{size},{size},3", "--num-shards", "8", "--overwrite", "--quiet"]
        if convert(args) != 0:
            raise RuntimeError(f"conversion of {h5} failed")
    return h5, out


def proteins(n: int, max_length: int) -> str:
    from shardkit.convert.cli import main as convert
    from shardkit.convert.examples import write_proteins

    base = os.path.join(CACHE, f"proteins-{n}-{max_length}")
    src = base + ".parquet"
    if not os.path.exists(src):
        os.makedirs(CACHE, exist_ok=True)
        write_proteins(src, n, seed=0, max_length=max_length)
    if not os.path.exists(os.path.join(base, "metadata.json")):
        args = [src, "--out", base, "--kind", "sequence", "--data", "Sequence", "--label", "ec_lvl_1",
                "--max-length", str(max_length), "--num-shards", "8", "--overwrite", "--quiet"]
        if convert(args) != 0:
            raise RuntimeError(f"conversion of {src} failed")
    return base


# ---------------------------------------------------------------- readers (one epoch each)


def shardkit_steady_epoch(dataset: str, batch: int, timed: int = 3) -> float:
    """Mean seconds per epoch over epochs 2..timed+1 of a fresh stream, as ``fit`` reads a long run: epoch 1
    traces the graph and lets tf.data's autotuner settle (epoch 2 alone reads 10-20% slower than later ones)."""
    return sum(api.epoch_seconds(dataset, batch, timed + 1)[0][1:]) / timed


def seed000_epoch(h5: str, batch: int, size: int) -> int:
    """Seed 000's imageLoader, one pass: contiguous PyTables slices, reshape, /255 in numpy (float64)."""
    import tables

    n = 0
    with tables.open_file(h5, mode="r") as files:
        total = len(files.root.train_data)
        for start in range(0, total, batch):
            x = files.root.train_data[start : start + batch]
            x = np.reshape(x, (x.shape[0], size, size, 3)) / 255
            y = files.root.train_label[start : start + batch]
            n += len(y)
    return n


def pydataset_epoch(h5: str, batch: int, size: int, seed: int) -> int:
    """A keras.utils.PyDataset reading globally shuffled index batches from the HDF5 with h5py (sorted fancy
    reads), /255 float32."""
    import h5py
    import keras

    class Shuffled(keras.utils.PyDataset):
        def __init__(self) -> None:
            super().__init__()
            self.file = h5py.File(h5, "r")
            self.n = len(self.file["train_label"])
            self.order = np.random.default_rng(seed).permutation(self.n)

        def __len__(self) -> int:
            return -(-self.n // batch)

        def __getitem__(self, i: int):
            idx = np.sort(self.order[i * batch : (i + 1) * batch])
            x = self.file["train_data"][idx].reshape(-1, size, size, 3)
            return x.astype(np.float32) / 255.0, self.file["train_label"][idx]

    data = Shuffled()
    try:
        return sum(len(data[i][1]) for i in range(len(data)))
    finally:
        data.file.close()


def numpy_epoch(x: np.ndarray, batch: int, seed: int) -> int:
    order = np.random.default_rng(seed).permutation(len(x))
    n = 0
    for start in range(0, len(x), batch):
        n += len(x[order[start : start + batch]])
    return n


def _timed(fn, *args) -> float:
    t0 = time.perf_counter()
    fn(*args)
    return time.perf_counter() - t0


def keras_arrays_epoch(x: np.ndarray, y: np.ndarray, batch: int) -> int:
    """What ``model.fit(x, y, shuffle=True)`` feeds from memory: Keras' array adapter (shuffled index batches,
    gathered from the in-memory tensor)."""
    from keras.src.trainers.data_adapters.array_data_adapter import ArrayDataAdapter

    return sum(int(b[1].shape[0]) for b in ArrayDataAdapter(x, y, batch_size=batch, shuffle=True).get_tf_dataset())


def reader_table(n_per_class: int, size: int, batch: int, repeats: int) -> tuple[str, dict[str, Any]]:
    import tables

    h5, dataset = knots(n_per_class, size)
    with tables.open_file(h5, "r") as f:
        x = f.root.train_data[:].reshape(-1, size, size, 3)
        y = f.root.train_label[:]
    nbytes = size * size * 3
    from shardkit.train.dataset import open_dataset

    train_n = open_dataset(dataset).count("train")
    first_epoch = api.epoch_seconds(dataset, batch, 1)[0][0]
    contenders = {
        "shardkit reader (global shuffle, uint8), steady epochs": (lambda r: shardkit_steady_epoch(dataset, batch), train_n),
        "seed-000 generator (PyTables slices, /255, no shuffle)": (lambda r: _timed(seed000_epoch, h5, batch, size), len(x)),
        "keras PyDataset over HDF5 (global shuffle, /255)": (lambda r: _timed(pydataset_epoch, h5, batch, size, r), len(x)),
        "in-memory arrays via Keras' fit(x, y) adapter (global shuffle, uint8)": (lambda r: _timed(keras_arrays_epoch, x, y, batch), len(x)),
        "in-memory numpy fancy-index batches (global shuffle, uint8)": (lambda r: _timed(numpy_epoch, x, batch, r), len(x)),
    }
    times: dict[str, list[float]] = {name: [] for name in contenders}
    for name, (fn, _) in contenders.items():
        fn(99)  # warm: page cache, graph tracing
    for r in range(repeats):  # round robin, so load from other processes hits every reader alike
        for name, (fn, _) in contenders.items():
            times[name].append(fn(r))
    rows = {}
    for name, (_, expected) in contenders.items():
        rate = expected / median(times[name])
        rows[name] = {"examples_per_s": rate, "mb_per_s": rate * nbytes / 1e6, "seconds": median(times[name]), "examples": expected}
    rate = train_n / first_epoch
    rows["shardkit reader, first epoch incl. pipeline start"] = {
        "examples_per_s": rate, "mb_per_s": rate * nbytes / 1e6, "seconds": first_epoch, "examples": train_n}
    ours = rows["shardkit reader (global shuffle, uint8), steady epochs"]["examples_per_s"]
    lines = [
        f"Reader throughput, knots {size}x{size}x3 uint8, batch {batch}, one epoch, median of {repeats} rounds "
        "(readers run round robin; shardkit: epochs 2-4 of a fresh stream, as fit reads it):",
        "",
        "| reader | examples/s | MB/s | shardkit x |",
        "|---|---:|---:|---:|",
    ]
    for name, r in rows.items():
        lines.append(f"| {name} | {r['examples_per_s']:,.0f} | {r['mb_per_s']:,.0f} | {ours / r['examples_per_s']:.2f} |")
    return "\n".join(lines), rows


# ---------------------------------------------------------------- training epochs (fresh process each)


def child_train(feed: str, model_name: str, dataset: str, batch: int, epochs: int) -> None:
    """Run in a fresh process: train ``epochs`` epochs, report each epoch's wall time."""
    import keras

    from shardkit.train import models
    from shardkit.train.dataset import ReadOptions, eval_dataset, open_dataset, training_input

    keras.utils.set_random_seed(0)
    ds = open_dataset(dataset)
    model = models.build_model(model_name, ds.metadata, ReadOptions())
    models.compile_model(model, ds.metadata)
    import psutil

    base_rss = psutil.Process().memory_info().rss  # TensorFlow + the model, before any data
    times: list[float] = []

    class Timer(keras.callbacks.Callback):
        def on_epoch_begin(self, epoch, logs=None):
            self.t0 = time.perf_counter()

        def on_epoch_end(self, epoch, logs=None):
            times.append(time.perf_counter() - self.t0)

    if feed == "shardkit":
        inp = training_input(dataset, batch, epochs, seed=0)
        kwargs = inp.fit_kwargs()
        kwargs.pop("validation_data")
        model.fit(epochs=epochs, callbacks=[Timer()], verbose=0, **kwargs)
    else:
        xs, ys = [], []
        for x, y in eval_dataset(ds, "train", 256):
            xs.append(x.numpy())
            ys.append(y.numpy())
        x, y = np.concatenate(xs), np.concatenate(ys)
        del xs, ys
        model.fit(x, y, batch_size=batch, epochs=epochs, shuffle=True, callbacks=[Timer()], verbose=0)
    emit_result({"epoch_seconds": times, "base_rss_bytes": base_rss})


def training_table(jobs: list[tuple[str, str, str]], batch: int, epochs: int, repeats: int) -> tuple[str, dict[str, Any]]:
    rows: dict[str, Any] = {}
    for label, model_name, dataset in jobs:
        for feed in ("in-memory", "shardkit"):
            timed, peaks, above = [], [], []
            for _ in range(repeats):
                argv = python_module("bench.train_bench", "--child", feed, model_name, dataset, str(batch), str(epochs))
                res = run_measured(argv)
                timed.extend(res.result["epoch_seconds"][1:])  # epoch 1 includes tracing
                peaks.append(res.peak_rss_bytes)
                above.append(res.peak_rss_bytes - res.result["base_rss_bytes"])
            rows[(label, feed)] = {
                "epoch_s": median(timed),
                "peak_rss_mb": max(peaks) / 2**20,
                "data_rss_mb": max(above) / 2**20,
                "epochs_timed": len(timed),
            }
    lines = [
        f"Whole-epoch training time on CPU, batch {batch}, median of {repeats} processes x {epochs - 1} epochs "
        "(first epoch excluded), peak RSS of the process:",
        "",
        "| model / data | in-memory epoch s | shardkit epoch s | time ratio | in-memory peak RSS MB | shardkit peak RSS MB "
        "| RSS ratio | in-memory data RSS MB | shardkit data RSS MB | data RSS ratio |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for label, _, _ in jobs:
        mem, ours = rows[(label, "in-memory")], rows[(label, "shardkit")]
        lines.append(
            f"| {label} | {mem['epoch_s']:.2f} | {ours['epoch_s']:.2f} | {ours['epoch_s'] / mem['epoch_s']:.2f} | "
            f"{mem['peak_rss_mb']:,.0f} | {ours['peak_rss_mb']:,.0f} | {ours['peak_rss_mb'] / mem['peak_rss_mb']:.2f} | "
            f"{mem['data_rss_mb']:,.0f} | {ours['data_rss_mb']:,.0f} | {ours['data_rss_mb'] / max(mem['data_rss_mb'], 1e-9):.2f} |"
        )
    lines += ["", "data RSS = peak RSS minus the same process's RSS once TensorFlow and the compiled model were up."]
    return "\n".join(lines), {f"{k[0]} / {k[1]}": v for k, v in rows.items()}


# ---------------------------------------------------------------- device-friendly: step time, reader vs synthetic


def device_steps(dataset: str, batch: int, steps: int, warmup: int, precision: str, xla: bool) -> tuple[str, dict[str, Any]]:
    """knot-cnn step time fed by shardkit vs by one synthetic batch already on the device."""
    import keras
    import tensorflow as tf

    from shardkit.train import models, strategy
    from shardkit.train.dataset import ReadOptions, open_dataset, training_input

    strategy.configure_devices()
    strategy.set_precision(precision)
    ds = open_dataset(dataset)
    full_per_epoch = max(1, ds.count("train") // batch)
    epochs = -(-(steps + warmup) // full_per_epoch)
    results = {}
    for feed in ("synthetic", "shardkit"):
        keras.utils.set_random_seed(0)
        model = models.build_model("knot-cnn", ds.metadata, ReadOptions())
        models.compile_model(model, ds.metadata, jit=xla)
        if feed == "synthetic":
            f = ds.feature
            x = tf.constant(np.random.default_rng(0).integers(0, 256, (batch, *f.shape), dtype=np.uint8))
            y = tf.constant(np.random.default_rng(1).integers(0, ds.metadata.label.num_classes, batch, dtype=np.int32))
            data = tf.data.Dataset.from_tensors((x, y)).repeat().take(warmup + steps).cache()
        else:
            stream = training_input(dataset, batch, epochs, seed=0).train
            data = stream.filter(lambda x, y: tf.shape(y)[0] == batch).take(warmup + steps)  # full batches only
        stamps: list[float] = []

        class Stamp(keras.callbacks.Callback):
            def on_train_batch_end(self, b, logs=None):
                if logs is not None:
                    float(logs["loss"])  # sync with the device
                stamps.append(time.perf_counter())

        model.fit(data, epochs=1, steps_per_epoch=warmup + steps, callbacks=[Stamp()], verbose=0, shuffle=False)
        deltas = np.diff(stamps[warmup - 1 :])
        results[feed] = {"median_step_ms": float(np.median(deltas) * 1e3), "mean_step_ms": float(deltas.mean() * 1e3)}
    ratio = results["shardkit"]["median_step_ms"] / results["synthetic"]["median_step_ms"]
    device = tf.config.list_logical_devices("GPU")
    lines = [
        f"knot-cnn step time on {device[0].name if device else 'CPU'}, batch {batch}, {precision}"
        + (", XLA" if xla else "") + f", median of {steps} steps after {warmup} warm-up:",
        "",
        "| feed | median step ms | mean step ms |",
        "|---|---:|---:|",
        *(f"| {k} | {v['median_step_ms']:.2f} | {v['mean_step_ms']:.2f} |" for k, v in results.items()),
        "",
        f"shardkit / synthetic step time: {ratio:.3f} (target <= 1.05)",
    ]
    results["ratio"] = ratio
    return "\n".join(lines), results


# ---------------------------------------------------------------- main


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--child", nargs=5, metavar=("FEED", "MODEL", "DATASET", "BATCH", "EPOCHS"), help=argparse.SUPPRESS)
    p.add_argument("--reader-knots", type=int, default=1000, help="knots per class for the reader table")
    p.add_argument("--reader-size", type=int, default=128)
    p.add_argument("--train-knots", type=int, default=1000, help="knots per class for the training table")
    p.add_argument("--train-size", type=int, default=64)
    p.add_argument("--proteins", type=int, default=6000)
    p.add_argument("--max-length", type=int, default=660)
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--epochs", type=int, default=3, help="per training process; the first is not timed")
    p.add_argument("--repeats", type=int, default=5, help="reader passes")
    p.add_argument("--train-repeats", type=int, default=2, help="training processes per feed")
    p.add_argument("--device-friendly", action="store_true", help="only the knot-cnn step-time comparison (GPU)")
    p.add_argument("--steps", type=int, default=200)
    p.add_argument("--warmup", type=int, default=20)
    p.add_argument("--precision", default="float32")
    p.add_argument("--xla", action="store_true")
    p.add_argument("--large-proteins", type=int, default=0, metavar="N",
                   help="add a protein-cnn row at N proteins (in-memory one-hot grows with N, shardkit's RSS does not)")
    p.add_argument("--only-large", action="store_true", help="run just the --large-proteins row")
    p.add_argument("--json", metavar="PATH", help="also write the raw numbers here")
    a = p.parse_args(argv)
    if a.child:
        feed, model_name, dataset, batch, epochs = a.child
        child_train(feed, model_name, dataset, int(batch), int(epochs))
        return 0
    raw: dict[str, Any] = {}
    if a.device_friendly:
        _, dataset = knots(a.reader_knots, a.reader_size)
        text, raw["device"] = device_steps(dataset, a.batch_size, a.steps, a.warmup, a.precision, a.xla)
        print(text)
    else:
        jobs = []
        if not a.only_large:
            text, raw["reader"] = reader_table(a.reader_knots, a.reader_size, a.batch_size, a.repeats)
            print(text + "\n", flush=True)
            _, knot_ds = knots(a.train_knots, a.train_size)
            jobs += [
                (f"knot-cnn / knots {a.train_size}x{a.train_size}", "knot-cnn", knot_ds),
                (f"protein-cnn / {a.proteins} proteins {a.max_length}x21", "protein-cnn", proteins(a.proteins, a.max_length)),
            ]
        if a.large_proteins:
            large = proteins(a.large_proteins, a.max_length)
            jobs.append((f"protein-cnn / {a.large_proteins} proteins {a.max_length}x21", "protein-cnn", large))
        text, raw["training"] = training_table(jobs, a.batch_size, a.epochs, a.train_repeats)
        print(text)
    if a.json:
        with open(a.json, "w", encoding="utf-8") as f:
            json.dump(raw, f, indent=2, default=str)
    return 0


if __name__ == "__main__":
    sys.exit(main())
