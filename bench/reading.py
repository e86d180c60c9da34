"""Reading, memory and diagnose sections: the reader out of core against parallel sequential reads of its shards;
vs an unshuffled generator, a shuffled PyDataset and in-memory arrays; cycle-length, shard-count and GZIP sweeps;
epoch time and peak RSS of training fed by each; ``shardkit-train bench``'s verdicts."""

from __future__ import annotations

import itertools
import os
import shutil
import subprocess
import time
import traceback
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict
from typing import Any, Callable, Sequence

import numpy as np

from shardkit.spec import read_metadata
from shardkit.train.options import ReadOptions
from shardkit.train.readahead import evict, parallel_read, resident_fraction

from . import inputs
from .conversion import bytes_per_example, convert
from .measure import child, median, round_robin, run_measured, timed

MODES = ("shardkit", "in-memory", "in-memory float32")
COLD = "shardkit, cold"  # the reader with the page cache evicted at each epoch's start
LARGE_N = 300_000  # projection point: 300,000 class-sorted knot images, the size that motivated the reader


def reader_defaults() -> dict[str, Any]:
    """The reader's interleave settings, recorded with each measurement of it (results outlive defaults)."""
    return {k: getattr(ReadOptions(), k) for k in ("cycle_length", "block_length", "read_buffer_bytes")}


def epoch_seconds(dataset: str, batch: int, epochs: int, **read_options: Any) -> tuple[list[float], int]:
    """Seconds of each epoch of one training stream read as ``fit`` reads it (nothing consuming), and its examples."""
    from shardkit.train.dataset import open_dataset, train_dataset, training_plan

    ds = open_dataset(dataset)
    steps = training_plan(ds, batch).steps_per_epoch
    stream = iter(train_dataset(ds, batch, epochs, seed=0, options=ReadOptions(**read_options)))
    times, n = [], 0
    for _ in range(epochs):
        start, n = time.perf_counter(), sum(int(next(stream)[1].shape[0]) for _ in range(steps))
        times.append(time.perf_counter() - start)
    return times, n


def throughput(dataset: str, batch: int, repeats: int, **read_options: Any) -> dict[str, Any]:
    """Examples/s in steady state: the median of epochs 2..repeats+1 of one stream (epoch 1 starts the pipeline)."""
    times, seen = epoch_seconds(dataset, batch, repeats + 1, **read_options)
    t = median(times[1:])
    return {"examples": seen, "seconds": t, "examples_per_s": seen / t, "all_seconds": times[1:],
            "mb_per_s": seen * read_metadata(dataset).features[0].raw_nbytes / t / 1e6}


def generator_epoch(h5: str, batch: int, shape: tuple[int, ...]) -> None:
    """One pass of a generator as people write one: contiguous PyTables slices in file order, /255, no shuffle."""
    import tables

    with tables.open_file(h5, mode="r") as f:
        for start in range(0, len(f.root.train_data), batch):
            x = f.root.train_data[start : start + batch]
            _ = (np.reshape(x, (x.shape[0], *shape)) / 255, f.root.train_label[start : start + batch])


def pydataset_epoch(h5: str, batch: int, shape: tuple[int, ...], seed: int) -> None:
    """A keras.utils.PyDataset reading a fresh global permutation from h5py (sorted fancy reads), /255 float32."""
    import h5py
    import keras

    class Shuffled(keras.utils.PyDataset):
        def __len__(self) -> int:
            return -(-len(order) // batch)

        def __getitem__(self, i: int) -> tuple[np.ndarray, np.ndarray]:
            idx = np.sort(order[i * batch : (i + 1) * batch])
            return f["train_data"][idx].reshape(-1, *shape).astype(np.float32) / 255.0, f["train_label"][idx]

    with h5py.File(h5, "r") as f:
        order, data = np.random.default_rng(seed).permutation(len(f["train_label"])), Shuffled()
        _ = [data[i] for i in range(len(data))]


def keras_arrays_epoch(x: np.ndarray, y: np.ndarray, batch: int) -> None:
    """What ``model.fit(x, y, shuffle=True)`` feeds from memory: Keras' array adapter over the arrays."""
    from keras.src.trainers.data_adapters.array_data_adapter import ArrayDataAdapter

    for _ in ArrayDataAdapter(x, y, batch_size=batch, shuffle=True).get_tf_dataset():
        pass


def shard_files(dataset: str, splits: Sequence[str] = ("train",)) -> list[str]:
    meta = read_metadata(dataset)
    return [p for split in splits if split in meta.splits for p in meta.shard_paths(dataset, split)]


def reader_pass(dataset: str, batch: int, readahead_mb: float) -> float:
    """Seconds per train-shard byte of one shuffled training epoch, timed from its first batch (tracing excluded)."""
    from shardkit.train.dataset import open_dataset, train_dataset

    stream = iter(train_dataset(open_dataset(dataset), batch, 1, options=ReadOptions(readahead_mb=readahead_mb)))
    first = int(next(stream)[1].shape[0])
    start, rest = time.perf_counter(), sum(int(y.shape[0]) for _, y in stream)
    return (time.perf_counter() - start) / (rest / (first + rest) * sum(map(os.path.getsize, shard_files(dataset))))


def out_of_core(dataset: str, batch: int, repeats: int, budgets: Sequence[float],
                regimes: Sequence[str] = ("cold", "warm")) -> dict[str, Any]:
    """GB/s of the train shards read cold (evicted first) and warm, round robin: the yardstick (parallel sequential
    reads) and the reader at each read-ahead budget; ratios to the yardstick are medians of per-round ratios."""
    files = shard_files(dataset)
    size = sum(map(os.path.getsize, files))
    passes = {"parallel read (8 threads, 8 MB reads)": lambda: timed(parallel_read, files) / size,
              **{f"reader, read-ahead {mb:g} MB": (lambda mb=mb: reader_pass(dataset, batch, mb)) for mb in budgets}}
    rates: dict[str, dict[str, list[float]]] = {name: {k: [] for k in regimes} for name in passes}
    left = []
    for _ in range(repeats):
        for name, fn in passes.items():
            for regime in regimes:
                if regime == "cold":
                    evict(shard_files(dataset, ("train", "validation", "test")))
                    left.append(resident_fraction(files))
                rates[name][regime].append(1 / fn() / 1e9)
    yard = rates[next(iter(passes))]
    rows = {name: {**{f"{k}_gb_s": median(v) for k, v in r.items()}, **{f"{k}_all": v for k, v in r.items()},
                   **{f"{k}_vs_yardstick": median([a / b for a, b in zip(r[k], yard[k])]) for k in r}}
            for name, r in rates.items()}
    return {"train_bytes": size, "train_shards": len(files), "repeats": repeats, "rows": rows,
            "resident_after_evict": max(left, default=None), "default_readahead_mb": ReadOptions.readahead_mb}


def full_scale(cache: str, rows: int, batch: int) -> dict[str, Any]:
    """``rows`` class-sorted knot images, cold: ``cp`` of the HDF5 input vs ``shardkit-convert`` with its defaults,
    then three cold epochs of the reader and of the yardstick over the shards, round robin (the shards are deleted
    afterwards, as is the copy)."""
    h5, out = inputs.source(cache, "knots", rows), os.path.join(cache, f"full-scale-{rows}")
    try:
        evict([h5])
        cp_s = timed(subprocess.run, ["cp", h5, out + ".h5"], check=True)
        evict([h5])
        run = convert([h5, "--out", out, "--overwrite", "--quiet", *inputs.ARGS["knots"], "--image-shape", "128,128,3"])
        epoch = out_of_core(out, batch, 3, [ReadOptions.readahead_mb], ("cold",))
    finally:
        shutil.rmtree(out, ignore_errors=True)
        if os.path.exists(out + ".h5"):
            os.remove(out + ".h5")
    return {"images": rows, "input_bytes": os.path.getsize(h5), "cp_s": cp_s, "convert_s": run.wall_s,
            "convert_peak_rss_bytes": run.peak_rss_bytes, **epoch}  # epoch's "rows": its readers


def compare_readers(cache: str, n: int, batch: int, repeats: int) -> dict[str, Any]:
    """Examples/s of each reader over ``n`` knot images, round robin (load hits all alike) after a warm-up pass."""
    h5, dataset = inputs.source(cache, "knots", n), inputs.dataset(cache, "knots", n, "--num-shards", "8")
    meta = read_metadata(dataset)
    shape, train_n = meta.features[0].shape, meta.splits["train"].count
    x, y = inputs.knot_arrays(h5, shape)
    seeds = itertools.count()  # a fresh permutation for each PyDataset pass
    readers: dict[str, tuple[Callable[[], float], int, bool]] = {  # name: (seconds of a pass, examples, shuffles)
        "shardkit": (lambda: sum(epoch_seconds(dataset, batch, 4)[0][1:]) / 3, train_n, True),
        "unshuffled generator": (lambda: timed(generator_epoch, h5, batch, shape), len(x), False),
        "PyDataset over h5py": (lambda: timed(pydataset_epoch, h5, batch, shape, next(seeds)), len(x), True),
        "in-memory numpy": (lambda: timed(keras_arrays_epoch, x, y, batch), len(x), True),
    }
    first = epoch_seconds(dataset, batch, 1)[0][0]
    for fn, *_ in readers.values():
        fn()  # warm: page cache, graph tracing
    times = round_robin({name: fn for name, (fn, *_) in readers.items()}, repeats)
    rows = {name: (median(times[name]), examples, shuffles) for name, (_, examples, shuffles) in readers.items()}
    rows["shardkit, first epoch (incl. pipeline start)"] = (first, train_n, True)
    return {name: {"examples_per_s": k / t, "mb_per_s": k / t * int(np.prod(shape)) / 1e6, "seconds": t,
                   "examples": k, "shuffles": shuffles} for name, (t, k, shuffles) in rows.items()}


def compression(cache: str, n_images: int, n_sequences: int, batch: int, repeats: int) -> list[dict[str, Any]]:
    """GZIP vs uncompressed shards of the same images and the same sequences: bytes on disk and throughput."""
    out = []
    for name, kind, n in (("knot images (raw uint8)", "knots", n_images), ("protein codes", "proteins", n_sequences)):
        for comp, extra in (("none", ()), ("GZIP", ("--compression", "gzip"))):
            path = inputs.dataset(cache, kind, n, *extra)
            out.append({"dataset": name, "compression": comp, "bytes": bytes_per_example(path)["bytes_total"],
                        **throughput(path, batch, repeats)})
    return out


def train_child(feed: str, model_name: str, dataset: str, batch: int, epochs: int, steps: int, h5: str) -> dict:
    """In a fresh process: ``model.fit`` fed by ``feed`` (in-memory: the decoded train split, or with ``h5`` the
    HDF5 source, uint8 or float32 /255) for ``epochs`` epochs of ``steps`` steps (0: whole epochs). Reports epoch
    times, the median step after the first two (which trace and fill buffers) and the RSS before any data."""
    import keras
    import psutil

    from shardkit.train import models
    from shardkit.train.dataset import eval_dataset, open_dataset, train_dataset, training_input

    keras.utils.set_random_seed(0)
    ds = open_dataset(dataset)
    model = models.build_model(model_name, ds.metadata, ReadOptions())
    models.compile_model(model, ds.metadata)
    base_rss = psutil.Process().memory_info().rss  # TensorFlow and the compiled model, no data yet
    times, ends = [], []  # epoch seconds, batch end times
    clock = keras.callbacks.LambdaCallback(on_epoch_begin=lambda e, logs: times.append(-time.perf_counter()),
                                           on_epoch_end=lambda e, logs: times.append(times.pop() + time.perf_counter()),
                                           on_train_batch_end=lambda b, logs: ends.append(time.perf_counter()))
    fit = {"epochs": epochs, "callbacks": [clock], "verbose": 0}
    if feed == COLD:  # every epoch starts with the shards out of the page cache
        files, feed = shard_files(dataset, ("train", "validation", "test")), "shardkit"
        fit["callbacks"].insert(0, keras.callbacks.LambdaCallback(on_epoch_begin=lambda e, logs: evict(files)))
    if feed == "shardkit" and steps:
        model.fit(train_dataset(ds, batch, 1, 0, options=ReadOptions()).repeat(), steps_per_epoch=steps, **fit)
    elif feed == "shardkit":
        kwargs = training_input(dataset, batch, epochs, seed=0).fit_kwargs()
        kwargs.pop("validation_data")
        model.fit(**kwargs, **{k: v for k, v in fit.items() if k != "epochs"})
    else:
        if h5:
            x, y = inputs.knot_arrays(h5, ds.feature.shape)
        else:
            xs, ys = zip(*((x.numpy(), y.numpy()) for x, y in eval_dataset(ds, "train", 256)))
            x, y = np.concatenate(xs), np.concatenate(ys)
        if feed == "in-memory float32":
            x = x.astype(np.float32)
            x /= 255.0
        model.fit(x, y, batch_size=batch, shuffle=True, steps_per_epoch=steps or None, **fit)
    gaps = np.diff(ends[1:])
    return {"epoch_seconds": times, "base_rss_bytes": base_rss, "step_s": float(np.median(gaps)) if len(gaps) else None}


def training_epochs(cache: str, knots_per_class: int, knot_size: int, n_proteins: int, max_length: int, batch: int,
                    epochs: int, repeats: int, models: Sequence[str] = ("knot-cnn", "protein-cnn"),
                    large_proteins: int = 0) -> dict[str, Any]:
    """Epoch time (after the first) and peak RSS, fed by shardkit vs by numpy arrays; ``large_proteins`` adds one
    protein-cnn job, run once, big enough for the in-memory one-hot to dominate RSS."""
    jobs = [(f"knot-cnn ({3 * knots_per_class:,} knots {knot_size}x{knot_size})", "knot-cnn", repeats,
             lambda: inputs.dataset(cache, "knots", 3 * knots_per_class, "--num-shards", "8", size=knot_size))]
    jobs += [(f"protein-cnn ({n:,} proteins, {max_length}x21 one-hot)", "protein-cnn", reps,
              lambda n=n: inputs.dataset(cache, "proteins", n, "--num-shards", "8", max_length=max_length))
             for n, reps in ((n_proteins, repeats), (large_proteins, 1)) if n]
    out: dict[str, Any] = {}
    for label, model_name, reps, build in (job for job in jobs if job[1] in models):
        out[label], dataset = {}, build()
        feeds = ("in-memory", "shardkit", *([COLD] if model_name == "knot-cnn" else []))
        measured = round_robin({feed: lambda feed=feed: run_measured(
            child(train_child, feed, model_name, dataset, batch, epochs, 0, "")) for feed in feeds}, reps)
        for feed, runs in measured.items():
            timed_epochs = [t for r in runs for t in r.result["epoch_seconds"][1:]]
            out[label][feed] = {"seconds": median(timed_epochs), "peak_rss_bytes": max(r.peak_rss_bytes for r in runs),
                                "data_rss_bytes": max(r.peak_rss_bytes - r.result["base_rss_bytes"] for r in runs),
                                "epochs_timed": len(timed_epochs)}
    return out


def _part(fn: Callable[[], Any]) -> Any:
    """One part of the section; a failure is recorded in place, and the other parts still run."""
    try:
        return fn()
    except Exception:
        return {"error": traceback.format_exc()}


def measure(cache: str, n: int, proteins: int, batch: int, repeats: int, cycle_lengths: Sequence[int | None],
            shard_counts: Sequence[int], readahead_mb: Sequence[float], training: dict[str, Any],
            full_scale_rows: int = 0) -> dict[str, Any]:
    """The reading section: ``n`` knot images (``proteins`` sequences for GZIP), cycle lengths (None: AUTOTUNE)."""
    swept = inputs.dataset(cache, "knots", n, "--num-shards", str(max(c for c in cycle_lengths if c)))
    return {
        "dataset": f"{n // 3 * 3:,} knot images 128x128x3 uint8 (shardkit: 8 train shards)",
        "batch_size": batch, "repeats": repeats, "reader_defaults": reader_defaults(),
        "out_of_core": _part(lambda: out_of_core(inputs.dataset(cache, "knots", n, "--num-shards", "32"), batch,
                                                 max(3, repeats), readahead_mb)),
        **({"full_scale": _part(lambda: full_scale(cache, full_scale_rows, batch))} if full_scale_rows else {}),
        "readers": _part(lambda: compare_readers(cache, n, batch, repeats)),
        "cycle_length": _part(lambda: [{"x": c or "auto", **throughput(swept, batch, repeats, cycle_length=c)}
                                       for c in cycle_lengths]),
        "shard_count": _part(lambda: [{"x": k, **throughput(inputs.dataset(cache, "knots", n, "--num-shards", str(k)),
                                                            batch, repeats)} for k in shard_counts]),
        "compression": _part(lambda: compression(cache, n, proteins, batch, repeats)),
        "epoch": _part(lambda: training_epochs(cache, **training, batch=batch)),
    }


def diagnose(cache: str, n: int, proteins: int, shards: int, batch: int, steps: int, warmup: int) -> dict[str, Any]:
    """``shardkit-train bench`` on a knot and a protein dataset: its three rates and its verdict."""
    from shardkit.train import diagnose

    jobs = {"knot-cnn": inputs.dataset(cache, "knots", n, "--num-shards", str(shards)),
            "protein-cnn": inputs.dataset(cache, "proteins", proteins)}
    runs = {m: diagnose.diagnose(path, m, batch_size=batch, steps=steps, warmup=warmup) for m, path in jobs.items()}
    return {"runs": {m: {**asdict(d), "input_bound": d.input_bound, "verdict": d.verdict()} for m, d in runs.items()},
            "steps": steps, "batch_size": batch}


def memory(cache: str, sizes: Sequence[int], steps: int, modes: Sequence[str] = MODES,
           parallel: int = 1) -> dict[str, Any]:
    """Peak RSS of knot-cnn training fed by each of ``modes`` at each N (knot images), a process each, ``parallel``
    at once; a mode projected (straight line) past 70% of the RAM is skipped."""
    import psutil

    total, points, skipped, batch = psutil.virtual_memory().total, [], [], 32
    for n in sorted(sizes):
        h5, ds = inputs.source(cache, "knots", n), inputs.dataset(cache, "knots", n)
        point: dict[str, Any] = {"n": n, "data_bytes": n * 128 * 128 * 3}
        projected = {mode: _line_at(points, mode, n) or 0 for mode in modes}
        runnable = [mode for mode in modes if projected[mode] <= 0.7 * total]
        for mode in [m for m in modes if m not in runnable]:
            point[mode] = None
            skipped.append(f"{mode} at N={n:,} (projected {projected[mode] / 2**30:.1f} GiB > 70% of "
                           f"{total / 2**30:.1f} GiB RAM)")
        with ThreadPoolExecutor(parallel) as pool:
            runs = list(pool.map(run_measured, [child(train_child, mode, "knot-cnn", ds, batch, 1, steps, h5)
                                                for mode in runnable]))
        point.update({mode: run.peak_rss_bytes for mode, run in zip(runnable, runs)})
        point["step_s"] = {mode: run.result.get("step_s") for mode, run in zip(runnable, runs)}
        points.append(point)
    return {
        "points": points, "projection": project(points, modes), "model": "knot-cnn",
        "notes": f"Not run (would not fit in memory here): {'; '.join(skipped)}." if skipped else "",
        "description": (f"Peak RSS (process tree, sampled every 50 ms) of one `model.fit` of knot-cnn for "
                        f"{steps} steps of batch {batch} on N knot images (128x128x3 uint8): fed by the "
                        "shardkit reader, by the uint8 arrays loaded whole from the HDF5 file, and by those "
                        "arrays as float32 /255 (the usual in-memory recipe). Each point is a fresh process; step = "
                        "its median step time after the first two steps (an epoch has as many steps either way)."),
    }


def _line(points: list[dict[str, Any]], mode: str) -> tuple[float, float] | None:
    """Least-squares (a, b) of RSS = a + b*N over the points where ``mode`` was measured (None under two)."""
    xy = np.array([(p["n"], p[mode]) for p in points if p.get(mode)], float)
    if len(xy) < 2:
        return None
    b, a = np.polyfit(xy[:, 0], xy[:, 1], 1)
    return float(a), float(b)


def _line_at(points: list[dict[str, Any]], mode: str, n: int) -> float | None:
    line = _line(points, mode)
    return None if line is None else line[0] + line[1] * n


def project(points: list[dict[str, Any]], modes: Sequence[str] = MODES) -> dict[str, Any]:
    """Per mode the line RSS = a + b*N and its RSS at ``LARGE_N`` images; for in-memory modes, the N from which
    shardkit's (flat, at most its largest measured) peak is <= 1/10 of theirs."""
    ours = max((p["shardkit"] for p in points if p.get("shardkit")), default=None)
    if ours is None or "shardkit" not in modes:
        return {}
    out: dict[str, Any] = {"shardkit_peak_bytes": ours, "large_n": LARGE_N}
    for mode in modes:
        if (line := _line(points, mode)) is None:
            continue
        a, b = line
        out[mode] = {"intercept_bytes": a, "bytes_per_example": b, "at_large_n_bytes": a + b * LARGE_N,
                     **({"n_for_one_tenth": max(0.0, (10 * ours - a) / b)} if mode != "shardkit" and b > 0 else {})}
    return out

