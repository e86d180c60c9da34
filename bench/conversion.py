"""Conversion section: shardkit-convert (1 and 2 workers) vs the hand-written TFRecordWriter loop at several
input sizes, with the converter's peak RSS. The measuring functions are convert_bench's; this module only
sweeps sizes, repeats and takes medians."""

from __future__ import annotations

import os
import shutil
from typing import Any

from . import convert_bench, datasets
from .measure import median

ROW_BYTES = convert_bench.ROW_BYTES
ONCE_ABOVE_BYTES = 1e9  # inputs this big are converted once per job, not ``repeats`` times


def _warm(path: str) -> None:
    with open(path, "rb") as f:
        while f.read(64 << 20):
            pass


def measure_size(cache: str, label: str, rows: int, repeats: int) -> dict[str, Any]:
    """Median seconds, rows/s, MB/s and peak RSS of each job converting one knot HDF5 of ``rows`` rows."""
    src = datasets.knots_h5(cache, rows)
    _warm(src)
    input_bytes = rows * ROW_BYTES
    reps = 1 if input_bytes > ONCE_ABOVE_BYTES else repeats
    work = os.path.join(cache, "conversion-out")
    os.makedirs(work, exist_ok=True)
    seconds: dict[str, list[float]] = {"hand loop": [], "beam 1w": [], "beam 2w": []}
    phase: dict[str, list[float]] = {"hand loop": [], "beam 1w": [], "beam 2w": []}
    rss: dict[str, list[int]] = {"beam 1w": [], "beam 2w": []}
    for _ in range(reps):
        hand_out = os.path.join(work, "hand.tfrecord")
        t = convert_bench.hand_loop(src, hand_out)
        os.remove(hand_out)
        seconds["hand loop"].append(t)
        phase["hand loop"].append(t)
        for w in (1, 2):
            out = os.path.join(work, f"out-w{w}")
            t, peak, *write_phase = convert_bench.shardkit(src, out, w)
            shutil.rmtree(out, ignore_errors=True)
            seconds[f"beam {w}w"].append(t)
            phase[f"beam {w}w"].extend(write_phase)
            rss[f"beam {w}w"].append(peak)
    runs = {}
    for job, ts in seconds.items():
        t = median(ts)
        ph = median(phase[job]) if phase[job] else None
        runs[job] = {"seconds": t, "rows_per_s": rows / t, "mb_per_s": input_bytes / t / 1e6, "all_seconds": ts,
                     "write_phase_seconds": ph, "write_phase_rows_per_s": rows / ph if ph else None,
                     "peak_rss_bytes": max(rss[job]) if job in rss else None}
    return {"label": label, "rows": rows, "input_bytes": input_bytes, "repeats": reps, "runs": runs}


def measure(cache: str, sizes: dict[str, int], repeats: int) -> dict[str, Any]:
    """Every size, smallest first (rows/s and peak RSS vs N)."""
    import tensorflow  # noqa: F401  (imported once, outside the hand loop's timing)

    out = [measure_size(cache, label, rows, repeats) for label, rows in sorted(sizes.items(), key=lambda kv: kv[1])]
    return {
        "sizes": out,
        "notes": ("Input: class-sorted knot HDF5 (PyTables EArray, 128x128x3 uint8 rows; seed-000 layout), page "
                  "cache warm. `beam Nw` = the whole `shardkit-convert --workers N` CLI run in a child process "
                  "(start-up, validation, planning, Beam job writing globally shuffled, stratified shards, "
                  "metadata, atomic publish); `write phase` = first shard started to last shard finished (from the "
                  "dataset's metadata stats), i.e. without Python/Beam start-up and worker teardown. A shardkit "
                  "run's peak RSS sums every process of its tree, sampled every 50 ms. "
                  "`hand loop` = read the HDF5 in blocks, one tf.train.Example per row, one TFRecordWriter, in an "
                  "already-running process with TensorFlow imported: no shuffle, split or shards (its wall time is "
                  "its write phase). Input and outputs on the same local disk. Inputs above "
                  f"{ONCE_ABOVE_BYTES / 1e9:.0f} GB are converted once per job; smaller ones take the median of the "
                  "repeats."),
    }
