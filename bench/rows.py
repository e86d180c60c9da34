"""Converting a CSV of PNG paths: ``shardkit-convert`` (the workers load the files) vs a hand-written loop that
opens each PNG and writes one TFRecord, in files per second (``python -m bench.run_all --only rows``)."""

from __future__ import annotations

import os
import time
from typing import Any

import numpy as np

from . import inputs
from .conversion import example, shardkit
from .measure import median


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
            w.write(example(tf, np.asarray(Image.open(os.path.join(folder, path)).convert("RGB")).tobytes(),
                            names[label], i))
    return time.perf_counter() - start


def measure(cache: str, n_per_class: int, size: int, repeats: int) -> dict[str, Any]:
    """Median files/s of the hand loop and of ``shardkit-convert`` with 1 and 2 workers (whole run and write
    phase), the runs of each repeat side by side."""
    files = 3 * n_per_class
    csv = inputs.source(cache, "pngs", files, size)
    runs: dict[str, list[float]] = {}
    for _ in range(repeats):
        runs.setdefault("hand loop", []).append(files / hand_loop(csv, os.path.join(cache, "hand.tfrecord")))
        for workers in (1, 2):
            wall, _, phase = shardkit(csv, os.path.join(cache, "pngs-ds"), workers, "--feature",
                                      "image=image:path:files", "--target", "label=class")
            runs.setdefault(f"shardkit {workers}w", []).append(files / wall)
            runs.setdefault(f"shardkit {workers}w write phase", []).append(files / phase)
    return {"files_per_s": {k: median(v) for k, v in runs.items()}, "n_per_class": n_per_class, "size": size,
            "repeats": repeats}
