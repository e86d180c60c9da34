"""What the converter costs and writes: the whole ``shardkit-convert`` run (1 and 2 workers) vs a hand-written
TFRecordWriter loop, from a knot HDF5 (with peak RSS) and from a CSV of PNG paths; its direct HDF5 reads vs the
library's; bytes per example."""

from __future__ import annotations

import os
import shutil
import time
from typing import Any, Iterator, Sequence

import numpy as np

from shardkit.spec import read_metadata

from . import inputs
from .measure import Measured, child, median, round_robin, run_measured

ROW_BYTES = 128 * 128 * 3
ONCE_ABOVE_BYTES = 1e9  # inputs this big are converted once per job, not ``repeats`` times
SEQUENCES, LENGTH, ONEHOT_DEPTH = 431_403, 660, 21  # a 431,403-sequence protein set; to_categorical of codes 0..20


def convert(argv: Sequence[str], extra: dict[int, str] | None = None) -> Measured:
    """``shardkit-convert argv`` in a measured child process (``extra``: other pids to watch); its result holds
    the driver's own peak RSS."""
    return run_measured(child(cli_run, list(map(str, argv))), extra)


def cli_run(argv: list[str]) -> dict[str, Any]:
    """In the child: ``shardkit-convert argv`` and its process's peak RSS (a failure exits with its code). The
    peak is VmHWM, not ru_maxrss, which keeps the RSS the parent had when it forked this process."""
    from shardkit.convert.cli import main

    if rc := main(argv):
        raise SystemExit(rc)
    with open("/proc/self/status", encoding="utf-8") as f:
        return {"driver_rss_bytes": next(int(line.split()[1]) * 1024 for line in f if line.startswith("VmHWM:"))}


def png_rows(csv: str) -> Iterator[tuple[int, np.ndarray, int]]:
    """(row id, pixels, class id) of each PNG a ``path,label`` CSV lists, opened with Pillow as they are read."""
    import pandas as pd
    from PIL import Image

    table = pd.read_csv(csv)
    names, folder = {n: i for i, n in enumerate(sorted(set(table["label"])))}, os.path.dirname(csv)
    return ((i, np.asarray(Image.open(os.path.join(folder, path)).convert("RGB")), names[label])
            for i, (path, label) in enumerate(zip(table["path"], table["label"])))


def hand_loop(rows: Iterator[tuple[int, np.ndarray, int]], out: str) -> dict[str, Any]:
    """The baseline, in this already-running process: one tf.train.Example (raw pixels, class id, row id) per row
    and one TFRecordWriter, reading the rows included; no start-up, so its wall time is its write phase."""
    import tensorflow as tf

    ints = lambda v: tf.train.Feature(int64_list=tf.train.Int64List(value=[v]))  # noqa: E731
    start = time.perf_counter()
    with tf.io.TFRecordWriter(out) as w:
        for row_id, pixels, label in rows:
            w.write(tf.train.Example(features=tf.train.Features(feature={
                "image": tf.train.Feature(bytes_list=tf.train.BytesList(value=[pixels.tobytes()])),
                "label": ints(label), "row_id": ints(row_id)})).SerializeToString())
    seconds = time.perf_counter() - start
    os.remove(out)
    return {"seconds": seconds, "peak_rss_bytes": None, "write_phase_seconds": seconds}


def shardkit(src: str, out: str, workers: int, *args: str) -> dict[str, Any]:
    """``shardkit-convert src args`` (default: the knot images' flags): wall s, peak RSS of its process tree and
    write phase s from its stats; the output is deleted."""
    shutil.rmtree(out, ignore_errors=True)
    run = convert([src, "--out", out, "--workers", workers, "--quiet",
                   *(args or (*inputs.ARGS["knots"], "--image-shape", "128,128,3"))])
    phase = float(read_metadata(out).stats["write_phase_seconds"])
    shutil.rmtree(out, ignore_errors=True)
    return {"seconds": run.wall_s, "peak_rss_bytes": run.peak_rss_bytes, "write_phase_seconds": phase}


def measure_size(cache: str, label: str, rows: int, repeats: int) -> dict[str, Any]:
    """Median seconds, rows/s, MB/s and peak RSS of each job converting one knot HDF5 of ``rows`` rows."""
    src = inputs.source(cache, "knots", rows)
    with open(src, "rb") as f:  # warm the page cache for every job alike
        while f.read(64 << 20):
            pass
    input_bytes = rows * ROW_BYTES
    reps = 1 if input_bytes > ONCE_ABOVE_BYTES else repeats
    work = os.path.join(cache, "conversion-out")
    os.makedirs(work, exist_ok=True)
    jobs = {"hand loop": lambda: hand_loop(inputs.knot_rows(src), os.path.join(work, "hand.tfrecord")),
            **{f"beam {w}w": lambda w=w: shardkit(src, os.path.join(work, f"out-w{w}"), w) for w in (1, 2)}}
    runs = {}
    for job, got in round_robin(jobs, reps).items():
        ts, peaks = [g["seconds"] for g in got], [g["peak_rss_bytes"] for g in got]
        t, ph = median(ts), median([g["write_phase_seconds"] for g in got])
        runs[job] = {"seconds": t, "rows_per_s": rows / t, "mb_per_s": input_bytes / t / 1e6, "all_seconds": ts,
                     "write_phase_seconds": ph, "write_phase_rows_per_s": rows / ph,
                     "peak_rss_bytes": max(peaks) if peaks[0] is not None else None}
    return {"label": label, "rows": rows, "input_bytes": input_bytes, "repeats": reps, "runs": runs}


def measure(cache: str, sizes: dict[str, int], repeats: int) -> dict[str, Any]:
    """Every size, smallest first (rows/s and peak RSS vs N)."""
    import tables  # noqa: F401  (both imported once, outside the hand loop's timing)
    import tensorflow  # noqa: F401

    return {"sizes": [measure_size(cache, label, n, repeats)
                      for label, n in sorted(sizes.items(), key=lambda kv: kv[1])]}


def csv_of_pngs(cache: str, n_per_class: int, size: int, repeats: int) -> dict[str, Any]:
    """Median files/s of the hand loop and of ``shardkit-convert`` with 1 and 2 workers (whole run and write
    phase) over a CSV of PNG paths, the runs of each repeat side by side."""
    files = 3 * n_per_class
    csv, out = inputs.source(cache, "pngs", files, size), os.path.join(cache, "pngs-ds")
    png_args = ("--feature", "image=image:path:files", "--target", "label=class")
    jobs = {"hand loop": lambda: hand_loop(png_rows(csv), os.path.join(cache, "hand.tfrecord")),
            **{f"shardkit {w}w": lambda w=w: shardkit(csv, out, w, *png_args) for w in (1, 2)}}
    rates = {}
    for job, got in round_robin(jobs, repeats).items():
        rates[job] = median([files / g["seconds"] for g in got])
        if job != "hand loop":
            rates[f"{job} write phase"] = median([files / g["write_phase_seconds"] for g in got])
    return {"files_per_s": rates, "n_per_class": n_per_class, "size": size, "repeats": repeats}


def fast_paths(cache: str, rows: int, repeats: int) -> dict[str, Any]:
    """Rows of a knot HDF5 read in random order, as a shard reads them: direct reads (``RawRows``) vs PyTables."""
    from shardkit.convert.sources import HDF5Source, SourceSpec

    src = inputs.source(cache, "knots", rows)
    order = np.random.default_rng(0).permutation(rows)
    rates: dict[bool, list[float]] = {True: [], False: []}
    for _ in range(repeats + 1):  # the first round warms the page cache and is dropped
        for direct in rates:
            source = HDF5Source(SourceSpec(src, "/train_data", "/train_label"))
            if not direct:
                source._raw = None  # the library path
            start = time.perf_counter()
            n = sum(len(block) for block, _ in source.read_rows(order))
            rates[direct].append(n / (time.perf_counter() - start))
            source.close()
    return {"rows": [{"path": "HDF5 rows in shuffled order (`RawRows`, os.preadv)", "library": "PyTables `node[a:b]`",
                      "library_rows_per_s": median(rates[False][1:]), "shardkit_rows_per_s": median(rates[True][1:])}],
            "rows_read": rows, "repeats": repeats}


def bytes_per_example(dataset_dir: str) -> dict[str, Any]:
    """Total shard bytes over all splits divided by the example count, from metadata.json."""
    meta = read_metadata(dataset_dir)
    count, f = sum(s.count for s in meta.splits.values()), meta.features[0]
    total = sum(sh.bytes for s in meta.splits.values() for sh in s.shards)
    return {"examples": count, "bytes_total": total, "bytes_per_example": total / count,
            "payload_bytes_per_example": f.raw_nbytes, "compression": meta.compression or "none",
            "feature": f"{f.kind}/{f.encoding}/{f.dtype}{list(f.shape)}"}


def storage(cache: str, images: int, sequences: int, arrays: int) -> dict[str, Any]:
    """Storage section: bytes per example of each encoding (converted once), against the float arrays people build in
    memory, projected to a ``SEQUENCES``-sequence protein set."""
    rows = {name: bytes_per_example(inputs.dataset(cache, kind, n, *extra)) for name, kind, n, extra in (
        ("image raw uint8", "knots", images, ()), ("image PNG", "knots", images, ("--image-encoding", "png")),
        ("amino-acid codes", "proteins", sequences, ()),
        ("amino-acid codes + GZIP", "proteins", sequences, ("--compression", "gzip")),
        ("array float32", "features", arrays, ()), ("array float16", "features", arrays, ("--dtype", "float16")))}
    onehot32, onehot64 = (LENGTH * ONEHOT_DEPTH * np.dtype(t).itemsize for t in ("float32", "float64"))
    codes, codes_gz = (rows[k]["bytes_per_example"] for k in ("amino-acid codes", "amino-acid codes + GZIP"))
    return {
        "encodings": rows,
        "naive": {"one-hot float32 (to_categorical)": onehot32,
                  "one-hot float64 (generator batches, np.empty)": onehot64,
                  "image float32 (/255 in numpy)": ROW_BYTES * 4, "image float64 (X/255 in numpy)": ROW_BYTES * 8},
        "protein_projection": {"sequences": SEQUENCES, "length": LENGTH, "one-hot float64": SEQUENCES * onehot64,
                               "one-hot float32": SEQUENCES * onehot32, "shardkit codes": SEQUENCES * codes,
                               "shardkit codes + GZIP": SEQUENCES * codes_gz},
        "codes_over_onehot_float32": codes / onehot32,
    }
