"""Memory: peak RSS of a Keras training run vs the number of examples N, fed by shardkit's reader (flat)
or by in-memory arrays loaded from the HDF5 source (linear in N). Each run is its own process."""

from __future__ import annotations

import argparse
import sys
import time
from typing import Any, Sequence

from .measure import emit_result, python_module, run_measured

MODES = ("shardkit", "in-memory", "in-memory float32")


def _train(mode: str, h5: str, dataset: str, model_name: str, batch_size: int, steps: int) -> dict[str, Any]:
    """One ``model.fit`` of ``steps`` steps fed by ``mode``; its steady step time (the median gap between
    batch ends after the first two steps, which trace and fill buffers): epochs of both feeds have as many steps."""
    import keras
    import numpy as np

    from . import api

    ends: list[float] = []
    stamp = keras.callbacks.LambdaCallback(on_train_batch_end=lambda batch, logs: ends.append(time.perf_counter()))
    model = api.build_compiled_model(model_name, dataset)
    start = time.perf_counter()
    if mode == "shardkit":
        ds = api.train_reader(dataset, batch_size)
        model.fit(ds.repeat(), steps_per_epoch=steps, epochs=1, verbose=0, callbacks=[stamp])
    else:
        x, y = api.load_h5_arrays(h5, dataset)
        if mode == "in-memory float32":
            x = x.astype(np.float32)
            x /= 255.0
        model.fit(x, y, batch_size=batch_size, steps_per_epoch=steps, epochs=1, shuffle=True, verbose=0,
                  callbacks=[stamp])
    gaps = np.diff(ends[1:])
    return {"seconds": time.perf_counter() - start, "step_s": float(np.median(gaps)) if len(gaps) else None}


def measure(cache: str, sizes: Sequence[int], model_name: str = "knot-cnn", batch_size: int = 32,
            steps: int = 10, modes: Sequence[str] = MODES, parallel: int = 1,
            ram_fraction: float = 0.7) -> dict[str, Any]:
    """Peak RSS of each mode at each N (knot images, ascending), each run in a fresh subprocess sampled with psutil
    (``parallel`` runs at once: each samples only its own process tree). A mode whose straight-line projection
    from the smaller N exceeds ``ram_fraction`` of this machine's RAM is skipped at that N, not run into the OOM
    killer; the margin is wide because the line undershoots (in-memory uint8 at N=150,000 took 23.0 GB where the
    line from N <= 24,000 said 19.1)."""
    from concurrent.futures import ThreadPoolExecutor

    import psutil

    from . import datasets

    total = psutil.virtual_memory().total
    limit = ram_fraction * total
    points: list[dict[str, Any]] = []
    skipped: list[str] = []
    for n in sorted(sizes):
        h5 = datasets.knots_h5(cache, n)
        ds = datasets.knots_dataset(cache, n)
        point: dict[str, Any] = {"n": n, "data_bytes": n * 128 * 128 * 3}
        runnable = []
        for mode in modes:
            projected = _line_at(points, mode, n)
            if projected is not None and projected > limit:
                point[mode] = None
                skipped.append(f"{mode} at N={n:,} (projected {projected / 2**30:.1f} GiB > {ram_fraction:.0%} of "
                               f"{total / 2**30:.1f} GiB RAM)")
            else:
                runnable.append(mode)
        argvs = [python_module("bench.memory_bench", "--worker", mode, "--h5", h5, "--dataset", ds, "--model",
                               model_name, "--batch-size", str(batch_size), "--steps", str(steps))
                 for mode in runnable]
        with ThreadPoolExecutor(parallel) as pool:
            runs = list(pool.map(run_measured, argvs))
        point.update({mode: run.peak_rss_bytes for mode, run in zip(runnable, runs)})
        point["step_s"] = {mode: run.result.get("step_s") for mode, run in zip(runnable, runs)}
        points.append(point)
    notes = f"Not run (would not fit in memory here): {'; '.join(skipped)}." if skipped else ""
    return {
        "points": points,
        "projection": project(points, modes),
        "model": model_name,
        "notes": notes,
        "description": (f"Peak RSS (process tree, sampled every 50 ms) of one `model.fit` of {model_name} for "
                        f"{steps} steps of batch {batch_size} on N knot images (128x128x3 uint8): fed by the "
                        "shardkit reader, by the uint8 arrays loaded whole from the HDF5 file, and by those "
                        "arrays as float32 /255 (the usual in-memory recipe). Each point is a fresh process; "
                        "step = its median step time after the first two steps (an epoch has as many steps either way)."),
    }


def _line(points: list[dict[str, Any]], mode: str) -> tuple[float, float] | None:
    """Least-squares (a, b) of RSS = a + b*N over the points where ``mode`` was measured (None under two)."""
    import numpy as np

    xy = [(p["n"], p[mode]) for p in points if p.get(mode)]
    if len(xy) < 2:
        return None
    b, a = np.polyfit(*np.array(xy, float).T, 1)
    return float(a), float(b)


def _line_at(points: list[dict[str, Any]], mode: str, n: int) -> float | None:
    line = _line(points, mode)
    return None if line is None else line[0] + line[1] * n


SEED000_IMAGES = 300_000


def project(points: list[dict[str, Any]], modes: Sequence[str] = MODES) -> dict[str, Any]:
    """Least-squares line RSS = a + b*N per mode; for in-memory modes, the RSS at seed 000's 300,000 images and
    the N from which shardkit's (flat, at most its largest measured) peak is <= 1/10 of theirs."""
    ours = max((p["shardkit"] for p in points if p.get("shardkit")), default=None)
    if ours is None or "shardkit" not in modes:
        return {}
    out: dict[str, Any] = {"shardkit_peak_bytes": ours, "seed000_images": SEED000_IMAGES}
    for mode in modes:
        line = _line(points, mode)
        if line is None:
            continue
        a, b = line
        entry = {"intercept_bytes": a, "bytes_per_example": b, "at_seed000_bytes": a + b * SEED000_IMAGES}
        if mode != "shardkit" and b > 0:
            entry["n_for_one_tenth"] = max(0.0, (10 * ours - a) / b)
        out[mode] = entry
    return out


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.memory_bench")
    p.add_argument("--worker", choices=MODES, required=True)
    p.add_argument("--h5", required=True)
    p.add_argument("--dataset", required=True)
    p.add_argument("--model", default="knot-cnn")
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--steps", type=int, default=10)
    a = p.parse_args(argv)
    emit_result(_train(a.worker, a.h5, a.dataset, a.model, a.batch_size, a.steps))
    return 0


if __name__ == "__main__":
    sys.exit(main())
