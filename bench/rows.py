"""Converting a CSV of PNG paths: ``shardkit-convert`` (the workers load the files) vs a hand-written loop that
opens each PNG and writes one TFRecord, in files per second (``python -m bench.run_all --only rows``)."""

from __future__ import annotations

import os
import shutil
import sys
import time

import numpy as np

from .measure import median, run_measured


def hand_loop(csv: str, out: str) -> float:
    """The baseline: open each PNG with Pillow, one tf.train.Example (raw pixels, class id) per file, one
    TFRecordWriter, in this already-running process; seconds."""
    import pandas as pd
    import tensorflow as tf
    from PIL import Image

    start = time.perf_counter()
    table = pd.read_csv(csv)
    names = {n: i for i, n in enumerate(sorted(set(table["label"])))}
    folder = os.path.dirname(csv)
    with tf.io.TFRecordWriter(out) as w:
        for i, (path, label) in enumerate(zip(table["path"], table["label"])):
            pixels = np.asarray(Image.open(os.path.join(folder, path)).convert("RGB"))
            w.write(tf.train.Example(features=tf.train.Features(feature={
                "image": tf.train.Feature(bytes_list=tf.train.BytesList(value=[pixels.tobytes()])),
                "label": tf.train.Feature(int64_list=tf.train.Int64List(value=[names[label]])),
                "row_id": tf.train.Feature(int64_list=tf.train.Int64List(value=[i])),
            })).SerializeToString())
    return time.perf_counter() - start


def measure(cache: str, n_per_class: int = 1000, size: int = 64, repeats: int = 3) -> dict[str, float]:
    """Median files/s of the hand loop and of ``shardkit-convert`` with 1 and 2 workers (whole run and write
    phase), the runs of each repeat side by side."""
    from shardkit.convert.examples import write_png_table
    from shardkit.spec import read_metadata

    csv = os.path.join(cache, f"pngs-{n_per_class}-{size}", "images.csv")
    if not os.path.exists(csv):
        write_png_table(csv, n_per_class, size=size, seed=0)
    files = 3 * n_per_class
    runs: dict[str, list[float]] = {}
    for _ in range(repeats):
        runs.setdefault("hand loop", []).append(files / hand_loop(csv, os.path.join(cache, "hand.tfrecord")))
        for workers in (1, 2):
            out = os.path.join(cache, "pngs-ds")
            shutil.rmtree(out, ignore_errors=True)
            run = run_measured([sys.executable, "-m", "shardkit.convert", csv, "--out", out, "--feature",
                                "image=image:path:files", "--target", "label=class", "--workers", str(workers),
                                "--quiet"])
            phase = float(read_metadata(out).stats["write_phase_seconds"])
            runs.setdefault(f"shardkit {workers}w", []).append(files / run.wall_s)
            runs.setdefault(f"shardkit {workers}w write phase", []).append(files / phase)
    return {k: median(v) for k, v in runs.items()}
