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
    import numpy as np

    from . import api

    model = api.build_compiled_model(model_name, dataset)
    start = time.perf_counter()
    if mode == "shardkit":
        ds = api.train_reader(dataset, batch_size)
        model.fit(ds.repeat(), steps_per_epoch=steps, epochs=1, verbose=0)
    else:
        x, y = api.load_h5_arrays(h5, dataset)
        if mode == "in-memory float32":
            x = x.astype(np.float32)
            x /= 255.0
        model.fit(x, y, batch_size=batch_size, steps_per_epoch=steps, epochs=1, shuffle=True, verbose=0)
    return {"seconds": time.perf_counter() - start}


def measure(cache: str, sizes: Sequence[int], model_name: str = "knot-cnn", batch_size: int = 32,
            steps: int = 10, modes: Sequence[str] = MODES, parallel: int = 1) -> dict[str, Any]:
    """Peak RSS of each mode at each N (knot images), each run in a fresh subprocess sampled with psutil
    (``parallel`` runs at once: each samples only its own process tree)."""
    from concurrent.futures import ThreadPoolExecutor

    from . import datasets

    jobs = []
    for n in sizes:
        h5 = datasets.knots_h5(cache, n)
        ds = datasets.knots_dataset(cache, n)
        for mode in modes:
            jobs.append((n, mode, python_module("bench.memory_bench", "--worker", mode, "--h5", h5, "--dataset", ds,
                                                "--model", model_name, "--batch-size", str(batch_size),
                                                "--steps", str(steps))))
    with ThreadPoolExecutor(parallel) as pool:
        peaks = list(pool.map(lambda job: run_measured(job[2]).peak_rss_bytes, jobs))
    points = [{"n": n, "data_bytes": n * 128 * 128 * 3} for n in sizes]
    for (n, mode, _), peak in zip(jobs, peaks):
        points[list(sizes).index(n)][mode] = peak
    return {
        "points": points,
        "projection": project(points, modes),
        "model": model_name,
        "description": (f"Peak RSS (process tree, sampled every 50 ms) of one `model.fit` of {model_name} for "
                        f"{steps} steps of batch {batch_size} on N knot images (128x128x3 uint8): fed by the "
                        "shardkit reader, by the uint8 arrays loaded whole from the HDF5 file, and by those "
                        "arrays as float32 /255 (the usual in-memory recipe). Each point is a fresh process."),
    }


SEED000_IMAGES = 300_000


def project(points: list[dict[str, Any]], modes: Sequence[str] = MODES) -> dict[str, Any]:
    """Least-squares line RSS = a + b*N per mode; for in-memory modes, the RSS at seed 000's 300,000 images and
    the N from which shardkit's (flat, at most its largest measured) peak is <= 1/10 of theirs."""
    import numpy as np

    if len(points) < 2 or "shardkit" not in modes:
        return {}
    n = np.array([p["n"] for p in points], float)
    ours = max(p["shardkit"] for p in points)
    out: dict[str, Any] = {"shardkit_peak_bytes": ours, "seed000_images": SEED000_IMAGES}
    for mode in modes:
        b, a = np.polyfit(n, np.array([p[mode] for p in points], float), 1)
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
