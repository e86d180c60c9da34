"""Converter benchmark: shardkit vs a hand-written single-process tf.io.TFRecordWriter loop, and peak RSS.

Prints markdown tables: rows/s and MB/s (medians of --runs) for the hand loop and for shardkit-convert
with 1 and 2 workers on the same knot HDF5 file, with ratios; with --size-gb, the peak RSS (all processes
of the conversion summed, sampled with psutil) of converting a multi-GB knot file.

    python -m bench.convert_bench [--rows 12000] [--runs 3] [--size-gb 6] [--workdir /tmp/shardkit-bench]
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import time

import numpy as np

from bench.measure import RssSampler

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

SIZE = 128
ROW_BYTES = SIZE * SIZE * 3


def make_knots(path: str, rows: int, bank: int = 1500) -> str:
    """A class-sorted PyTables knot file of ``rows`` rows; images are drawn from a bank of real renders."""
    import tables

    from shardkit.convert.examples import knot_image

    if os.path.exists(path):
        return path
    rng = np.random.default_rng(0)
    per = bank // 3
    banks = [np.stack([knot_image(c, SIZE, rng).reshape(-1) for _ in range(per)]) for c in range(3)]
    tmp = path + ".part"
    with tables.open_file(tmp, "w") as f:
        data = f.create_earray(f.root, "train_data", tables.UInt8Atom(), shape=(0, ROW_BYTES), expectedrows=rows)
        labels = f.create_earray(f.root, "train_label", tables.Int64Atom(), shape=(0,), expectedrows=rows)
        for c in range(3):
            n = rows // 3 + (1 if c < rows % 3 else 0)
            for start in range(0, n, 256):
                m = min(256, n - start)
                data.append(banks[c][np.arange(start, start + m) % per])
                labels.append(np.full(m, c, np.int64))
    os.replace(tmp, path)
    return path


def hand_loop(src: str, out: str) -> float:
    """The baseline: read the HDF5 in blocks, one tf.train.Example per row, one TFRecordWriter; seconds."""
    import tables
    import tensorflow as tf

    start = time.perf_counter()
    with tables.open_file(src) as f, tf.io.TFRecordWriter(out) as w:
        x, y = f.root.train_data, f.root.train_label
        for lo in range(0, x.shape[0], 256):
            xb, yb = x[lo : lo + 256], y[lo : lo + 256]
            for i in range(len(xb)):
                ex = tf.train.Example(features=tf.train.Features(feature={
                    "image": tf.train.Feature(bytes_list=tf.train.BytesList(value=[xb[i].tobytes()])),
                    "label": tf.train.Feature(int64_list=tf.train.Int64List(value=[int(yb[i])])),
                    "row_id": tf.train.Feature(int64_list=tf.train.Int64List(value=[lo + i])),
                }))
                w.write(ex.SerializeToString())
    return time.perf_counter() - start


def hand_script(src: str, out: str) -> float:
    """The hand loop as a user runs it: a fresh Python process that imports TensorFlow; wall seconds."""
    start = time.perf_counter()
    subprocess.run([sys.executable, "-m", "bench.convert_bench", "--hand-loop", src, out], check=True, cwd=REPO,
                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return time.perf_counter() - start


def shardkit(src: str, out: str, workers: int, extra: list[str] | None = None) -> tuple[float, int, float]:
    """Run shardkit-convert as a subprocess; (wall seconds, peak summed RSS of its process tree,
    seconds of the write phase: first shard started to last shard finished, from metadata.json)."""
    shutil.rmtree(out, ignore_errors=True)
    cmd = [sys.executable, "-m", "shardkit.convert", src, "--out", out, "--kind", "image", "--data", "/train_data",
           "--label", "/train_label", "--image-shape", f"{SIZE},{SIZE},3", "--workers", str(workers), "--quiet",
           *(extra or [])]
    start = time.perf_counter()
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    with RssSampler(proc.pid) as rss:
        _, err = proc.communicate()
        wall = time.perf_counter() - start
    if proc.returncode:
        raise SystemExit(f"shardkit-convert failed:\n{err.decode()[-3000:]}")
    from shardkit.spec import read_metadata

    return wall, rss.peak, float(read_metadata(out).stats["write_phase_seconds"])  # caller removes out


def throughput(a: argparse.Namespace) -> None:
    """The rows/s and MB/s table: hand loop vs shardkit with 1 and 2 workers."""
    work = a.fast_dir or a.workdir
    os.makedirs(work, exist_ok=True)
    src = make_knots(os.path.join(work, f"knots-{a.rows}.h5"), a.rows)
    mb = a.rows * ROW_BYTES / 1e6
    subprocess.run(["cat", src], stdout=subprocess.DEVNULL, check=True)  # warm the page cache for everyone
    import tensorflow  # noqa: F401  (imported once, outside the timed loop)

    modes = {"w1": (1, []), "w2": (2, []), "w2t": (2, ["--worker-mode", "thread"])}
    times: dict[str, list[float]] = {k: [] for k in ("hand", "script", *modes)}
    phase: dict[str, list[float]] = {k: [] for k in ("hand", "script", *modes)}
    rss: dict[str, list[int]] = {k: [] for k in modes}
    for _ in range(a.runs):
        t = hand_loop(src, os.path.join(work, "hand.tfrecord"))
        os.remove(os.path.join(work, "hand.tfrecord"))
        times["hand"].append(t)
        phase["hand"].append(t)
        t = hand_script(src, os.path.join(work, "hand.tfrecord"))
        os.remove(os.path.join(work, "hand.tfrecord"))
        times["script"].append(t)
        phase["script"].append(t)
        for key, (w, extra) in modes.items():
            t, r, ph = shardkit(src, os.path.join(work, f"out-{key}"), w, extra)
            shutil.rmtree(os.path.join(work, f"out-{key}"))
            times[key].append(t)
            phase[key].append(ph)
            rss[key].append(r)
    med = {k: statistics.median(v) for k, v in times.items()}
    mph = {k: statistics.median(v) for k, v in phase.items()}
    print(f"\nLoad average before: {os.getloadavg()[0]:.1f}. Throughput: {a.rows} knot images 128x128x3 ({mb:,.0f} MB) from one PyTables file, "
          f"median of {a.runs} runs, {os.cpu_count()} cores, input and output in {work}. shardkit = whole CLI run (start-up, planning, "
          "Beam, shuffle, split, metadata); hand loop = read + tf.train.Example + TFRecordWriter only.\n")
    print("| converter | wall s | rows/s | MB/s | vs hand loop | vs hand script | write-phase s | "
          "write-phase MB/s | vs hand loop (write phase) | peak RSS (all processes) |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    label = {"hand": "hand-written tf.io.TFRecordWriter loop (loop only)",
             "script": "same hand loop as a script (python + import tensorflow + loop)",
             "w1": "shardkit-convert --workers 1", "w2": "shardkit-convert --workers 2 (processes, default)",
             "w2t": "shardkit-convert --workers 2 --worker-mode thread"}
    for k in ("hand", "script", *modes):
        r = f"{max(rss[k]) / 1e6:,.0f} MB" if k in rss else "-"
        print(f"| {label[k]} | {med[k]:.2f} | {a.rows / med[k]:,.0f} | {mb / med[k]:,.1f} | "
              f"{med['hand'] / med[k]:.2f}x | {med['script'] / med[k]:.2f}x | {mph[k]:.2f} | {mb / mph[k]:,.1f} | "
              f"{mph['hand'] / mph[k]:.2f}x | {r} |")
    print("\nwall = whole process for shardkit (Python start, Beam import, worker start-up/teardown, planning, "
          "metadata); write phase = first shard started to last shard finished (metadata stats). The hand loop has "
          "no start-up in either column (TensorFlow imported beforehand).")


def main() -> None:
    if sys.argv[1:2] == ["--hand-loop"]:
        hand_loop(sys.argv[2], sys.argv[3])
        return
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--rows", type=int, default=12000, help="rows of the throughput input (128x128x3 knots)")
    p.add_argument("--runs", type=int, default=3, help="throughput runs (0: only the --size-gb RSS run)")
    p.add_argument("--size-gb", type=float, default=0.0, help="also measure peak RSS converting a file this big")
    p.add_argument("--workdir", default="/tmp/shardkit-bench", help="big RSS-run input and output (disk)")
    p.add_argument("--fast-dir", default="/dev/shm/shardkit-bench" if os.path.isdir("/dev/shm") else "",
                   help="throughput input and outputs (tmpfs, so the disk's write-back does not dominate)")
    a = p.parse_args()
    os.makedirs(a.workdir, exist_ok=True)
    if a.runs > 0:
        throughput(a)
    if a.size_gb > 0:
        rows = int(a.size_gb * 1e9 / ROW_BYTES)
        big = make_knots(os.path.join(a.workdir, f"knots-{rows}.h5"), rows)
        load = os.getloadavg()[0]
        t, r, ph = shardkit(big, os.path.join(a.workdir, "out-big"), 2)
        shutil.rmtree(os.path.join(a.workdir, "out-big"), ignore_errors=True)
        th = hand_loop(big, os.path.join(a.workdir, "hand-big.tfrecord"))
        os.remove(os.path.join(a.workdir, "hand-big.tfrecord"))
        gb = rows * ROW_BYTES / 1e9
        print(f"\nLoad average before: {load:.1f}. Converting {rows:,} rows ({gb:.2f} GB) from {a.workdir} (disk) "
              "to the same disk, default 128 MB shards, 2 worker processes; peak RSS sampled every 50 ms over "
              "the whole process tree:\n")
        print("| converter | seconds | rows/s | MB/s | vs hand loop | peak RSS, all processes summed |")
        print("|---|---:|---:|---:|---:|---:|")
        print(f"| hand-written tf.io.TFRecordWriter loop (loop only) | {th:.1f} | {rows / th:,.0f} | "
              f"{gb * 1e3 / th:,.1f} | 1.00x | - |")
        print(f"| shardkit-convert --workers 2 (wall) | {t:.1f} | {rows / t:,.0f} | {gb * 1e3 / t:,.1f} | "
              f"{th / t:.2f}x | {r / 1e9:.2f} GB |")
        print(f"| shardkit-convert --workers 2 (write phase) | {ph:.1f} | {rows / ph:,.0f} | {gb * 1e3 / ph:,.1f} | "
              f"{th / ph:.2f}x | |")


if __name__ == "__main__":
    main()
