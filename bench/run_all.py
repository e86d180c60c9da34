"""Run the shardkit benchmarks and write docs/benchmarks.md (+ docs/img/*.png, docs/benchmarks.json): the one
entry point of bench/, GPU section included."""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
import traceback
from pathlib import Path
from typing import Any, Callable

from bench import conversion, gpu, object_store, order, peers, plan_scale, reading, report
from bench.inputs import DEFAULT_CACHE
from bench.measure import REPO, describe, now_utc

SECTIONS: dict[str, Callable[..., dict[str, Any] | None]] = {  # name -> fn(cache, **sizes[name]), in run order
    "storage": conversion.storage, "reading": reading.measure, "memory": reading.memory,
    "conversion": conversion.measure, "fast_paths": conversion.fast_paths, "plan_scale": plan_scale.measure,
    "epoch_order": order.measure, "object_store": object_store.measure, "diagnose": reading.diagnose,
    "rows": conversion.csv_of_pngs, "peers": peers.measure, "gpu": gpu.measure}
# Measured only when named in --only: gpu on a GPU machine, its inputs carried in --cache; object_store, quoted by
# hand in docs/benchmarks.md; rows, a table after its hand-written block.
ON_REQUEST = {"gpu", "object_store", "rows"}
NOT_QUICK = {"peers"}  # minutes of conversions even at --quick sizes: in a --quick run only when named in --only


def knots_in(gb: float) -> int:
    """Knot images (whole classes of three) in ``gb`` GB of 128x128x3 pixels."""
    return int(gb * 1e9 / (128 * 128 * 3)) // 3 * 3


def sizes(quick: bool, big_gb: float) -> dict[str, dict[str, Any]]:
    """Each section's keyword arguments: tiny for --quick (a smoke run, not a measurement), else the report's."""
    if quick:
        return {"storage": {"images": 240, "sequences": 200, "arrays": 20},
                "reading": {"n": 240, "proteins": 200, "batch": 32, "repeats": 1, "cycle_lengths": (1, 8, None),
                            "shard_counts": (1, 8), "readahead_mb": (0, 256),
                            "training": {"knots_per_class": 16, "knot_size": 32, "n_proteins": 100, "max_length": 64,
                                         "epochs": 2, "repeats": 1, "models": ("knot-cnn",)}},
                "memory": {"sizes": (240,), "steps": 1, "modes": ("shardkit", "in-memory"), "parallel": 2},
                "conversion": {"sizes": {"small": 120}, "repeats": 1},
                "fast_paths": {"rows": 240, "repeats": 1},
                "plan_scale": {"rows": 20_000, "dask": False},
                "epoch_order": {"sizes": {"small": 300}, "batch": 32},
                "object_store": {"per_class": 40, "size": 32, "shard_counts": [2]},
                "diagnose": {"n": 240, "proteins": 200, "shards": 8, "batch": 32, "steps": 2, "warmup": 1},
                "rows": {"n_per_class": 10, "size": 16, "repeats": 1},
                "peers": {"repeats": 1},
                "gpu": {"n_knots": 240, "n_proteins": 200, "steps": 2, "warmup": 1, "min_epoch": 200}}
    return {"storage": {"images": 6_000, "sequences": 20_000, "arrays": 300},
            "reading": {"n": 24_000, "proteins": 20_000, "batch": 64, "repeats": 3,
                        "cycle_lengths": (1, 2, 4, 8, 16, None), "shard_counts": (1, 2, 4, 8, 16, 32),
                        "readahead_mb": (0, 64, 256, 1024), "full_scale_rows": 300_000,
                        "training": {"knots_per_class": 1_000, "knot_size": 64, "n_proteins": 6_000, "max_length": 660,
                                     "epochs": 3, "repeats": 2, "large_proteins": 80_000}},
            "memory": {"sizes": (1_500, 6_000, 24_000, knots_in(6)), "steps": 16},
            "conversion": {"sizes": {"small": 3_000, "medium": 12_000, f"multi-GB ({big_gb:g} GB)": knots_in(big_gb)},
                           "repeats": 3},
            "fast_paths": {"rows": 6_000, "repeats": 3},
            "plan_scale": {"rows": 10_000_000, "dask": True},
            "epoch_order": {"sizes": {"small": 1_200, "large": 12_960}, "batch": 64},
            "object_store": {"per_class": 1_000, "size": 64, "shard_counts": [8, 32]},
            "diagnose": {"n": 24_000, "proteins": 20_000, "shards": 16, "batch": 64, "steps": 10, "warmup": 3},
            "rows": {"n_per_class": 300, "size": 64, "repeats": 3},
            "peers": {"repeats": 3},
            "gpu": {"n_knots": 600, "n_proteins": 6_000, "steps": 100, "warmup": 10, "min_epoch": 20_000}}


def merge_gpu(paths: list[str]) -> dict[str, Any]:
    """Several runs' GPU sections (batch sizes, input encodings) as one section whose rows carry their settings."""
    runs = [json.loads(Path(path).read_text(encoding="utf-8")) for path in paths]
    runs = [r.get("gpu", r) for r in runs]  # results files, or GPU-only ones as in bench/results/
    return {**{k: v for k, v in runs[0].items() if k not in ("rows", "batch_size")},
            "rows": [row for r in runs for row in r.get("rows", [])]}


def measure(names: list[str], size: dict[str, dict[str, Any]], cache: str,
            apart: dict | None) -> tuple[dict[str, Any], dict[str, float]]:
    """The named sections' results (a failure: its traceback, and the others still run) and seconds each."""
    results: dict[str, Any] = {}
    seconds: dict[str, float] = {}
    for name in names:
        t0 = time.perf_counter()
        print(f"[bench] {name} ...", flush=True)
        try:
            section = SECTIONS[name](cache, **size[name])
            if section is None:  # skipped (it said why in one line): the last measurement, if any, stays
                continue
            results[name] = {**section, "measured_utc": now_utc()}
            if apart and name != "gpu":  # measured apart from the others: say where
                results[name]["machine"] = apart
        except Exception:
            results[name] = {"error": traceback.format_exc()}
            print(results[name]["error"], file=sys.stderr, flush=True)
        seconds[name] = round(time.perf_counter() - t0, 1)
        print(f"[bench] {name} done in {seconds[name]:.0f} s", flush=True)
    return results, seconds


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.run_all", description=__doc__.splitlines()[0])
    p.add_argument("--quick", action="store_true", help="tiny sizes, one repeat: a smoke run, not a measurement")
    p.add_argument("--big-gb", type=float, default=2.0, help="size of the multi-GB conversion input (default 2)")
    p.add_argument("--only", help=f"comma-separated sections to measure, of {','.join(SECTIONS)}; the others are "
                                   "kept from --results (gpu is measured only when named here)")
    p.add_argument("--cache", default=DEFAULT_CACHE, help="where generated inputs and converted datasets live")
    p.add_argument("--out", help="markdown to write (default docs/benchmarks.md; with --quick bench/out/benchmarks.md)")
    p.add_argument("--results", help="results JSON (default: beside --out, benchmarks.json)")
    p.add_argument("--render-only", action="store_true", help="measure nothing; re-render --results")
    p.add_argument("--no-render", action="store_true", help="write the results JSON only (e.g. on a GPU machine)")
    p.add_argument("--gpu-results", nargs="+", help="results JSON(s) of GPU runs: their gpu sections are merged in")
    p.add_argument("--gpu-prepare", action="store_true", help="only convert the GPU section's inputs into --cache")
    g = p.add_argument_group("gpu section")
    g.add_argument("--gpu-backend", choices=("auto", "jax", "torch", "tensorflow"), default="auto",
                   help="Keras backend (auto: $KERAS_BACKEND, else jax or torch where it has a GPU, else tensorflow)")
    g.add_argument("--gpu-precisions", default="float32,mixed_float16")
    g.add_argument("--gpu-batch-sizes", default="64,256")
    g.add_argument("--gpu-steps-per-execution", default="1,auto", help="comma-separated numbers or auto")
    g.add_argument("--gpu-sequence-encoding", choices=("onehot", "codes"), default="onehot")
    args = p.parse_args(argv)
    only = [x for x in (args.only or "").split(",") if x]
    if unknown := set(only) - set(SECTIONS):
        p.error(f"unknown sections {sorted(unknown)}; choose from {list(SECTIONS)}")
    out = args.out or os.path.join(REPO, "bench/out" if args.quick else "docs", "benchmarks.md")
    results_path = args.results or os.path.join(os.path.dirname(os.path.abspath(out)), "benchmarks.json")
    size = sizes(args.quick, args.big_gb)
    if args.gpu_prepare:
        print(json.dumps(gpu.datasets(args.cache, size["gpu"]["n_knots"], size["gpu"]["n_proteins"]), indent=1))
        return 0
    if "gpu" in only:
        os.environ["KERAS_BACKEND"] = gpu.pick_backend() if args.gpu_backend == "auto" else args.gpu_backend
        size["gpu"].update(backend=os.environ["KERAS_BACKEND"], precisions=args.gpu_precisions.split(","),
                           batch_sizes=[int(b) for b in args.gpu_batch_sizes.split(",")],
                           sequence_encoding=args.gpu_sequence_encoding,
                           steps_per_execution=[int(n) if n.isdigit() else n
                                                for n in args.gpu_steps_per_execution.split(",")])
    results: dict[str, Any] = json.loads(Path(results_path).read_text(encoding="utf-8")) \
        if (only or args.render_only) and os.path.exists(results_path) else {}
    if not args.render_only:
        os.makedirs(args.cache, exist_ok=True)
        start, machine = time.perf_counter(), describe() if set(only) != {"gpu"} else {}
        if not only or "machine" not in results:
            results["machine"] = machine
        names = only or [n for n in SECTIONS if n not in ON_REQUEST and not (args.quick and n in NOT_QUICK)]
        apart = {k: machine[k] for k in ("cpu", "usable_cores", "load_average_at_start")} if only and machine else None
        sections, seconds = measure(names, size, args.cache, apart)
        old = results.get("config", {})  # with --only, the run that measured the other sections keeps its settings
        results.update(sections)
        results["config"] = {"quick": args.quick, "repeats": 1 if args.quick else 3, "sizes": size,
                             "total_minutes": round((time.perf_counter() - start) / 60, 1), **(old if only else {}),
                             "section_seconds": {**old.get("section_seconds", {}), **seconds}}
    if args.gpu_results:
        results["gpu"] = merge_gpu(args.gpu_results)
    os.makedirs(os.path.dirname(os.path.abspath(results_path)), exist_ok=True)
    Path(results_path).write_text(json.dumps(results, indent=1, sort_keys=True), encoding="utf-8")
    if not args.no_render:  # from the file, so that the report renders the same as from the committed JSON
        report.render(json.loads(Path(results_path).read_text(encoding="utf-8")), out)
    print(f"[bench] wrote {results_path}" + ("" if args.no_render else f" and {out}"))
    return 1 if any(isinstance(v, dict) and "error" in v for k, v in results.items() if k in SECTIONS) else 0


if __name__ == "__main__":
    raise SystemExit(main())
