"""Run the shardkit benchmarks and write docs/benchmarks.md (+ docs/img/*.png, docs/benchmarks.json): the one
entry point of bench/, GPU section included."""

from __future__ import annotations

import argparse
import importlib
import json
import os
import sys
import time
import traceback
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable

from bench import report
from bench.inputs import DEFAULT_CACHE
from bench.measure import REPO, describe, now_utc


def knots_in(gb: float) -> int:
    """Knot images (whole classes of three) in ``gb`` GB of 128x128x3 pixels."""
    return int(gb * 1e9 / (128 * 128 * 3)) // 3 * 3


@dataclass(frozen=True)
class Sizes:
    """How big each benchmark runs: rows for conversion sizes, examples for the readers and the memory sweep."""

    repeats: int
    conversion: dict[str, int]  # label -> knot rows
    reading_n: int
    reading_proteins: int
    cycle_lengths: tuple[int | None, ...]  # None = AUTOTUNE
    shard_counts: tuple[int, ...]
    shards: int
    storage: dict[str, int]
    memory_sizes: tuple[int, ...]
    memory_steps: int
    batch_size: int = 64
    fast_path_rows: int = 6_000
    plan_scale: dict[str, Any] = field(default_factory=lambda: {"rows": 10_000_000, "dask": True})
    epoch_order: dict[str, int] = field(default_factory=lambda: {"small": 1_200, "large": 12_960})  # knot rows
    object_store: dict[str, Any] = field(default_factory=lambda: {"per_class": 1_000, "size": 64, "shard_counts": [8, 32]})
    rows: dict[str, int] = field(default_factory=lambda: {"n_per_class": 300, "size": 64})  # PNGs per class
    gpu: dict[str, Any] = field(default_factory=lambda: {"n_knots": 600, "n_proteins": 6_000, "steps": 100,
                                                          "warmup": 10, "min_epoch": 20_000})
    extra: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def quick(cls) -> "Sizes":
        return cls(repeats=1, conversion={"small": 120}, reading_n=240, reading_proteins=200,
                   cycle_lengths=(1, 8, None), shard_counts=(1, 8), shards=8,
                   storage={"images": 240, "sequences": 200, "arrays": 20},
                   memory_sizes=(240,), memory_steps=1, batch_size=32, fast_path_rows=240,
                   plan_scale={"rows": 20_000, "dask": False}, epoch_order={"small": 300},
                   object_store={"per_class": 40, "size": 32, "shard_counts": [2]}, rows={"n_per_class": 10, "size": 16},
                   gpu={"n_knots": 240, "n_proteins": 200, "steps": 2, "warmup": 1, "min_epoch": 200},
                   extra={"memory_modes": ("shardkit", "in-memory"), "memory_parallel": 2, "diagnose_steps": (2, 1),
                          "readahead_mb": (0, 256),
                          "training": {"knots_per_class": 16, "knot_size": 32, "n_proteins": 100, "max_length": 64,
                                       "epochs": 2, "repeats": 1, "models": ("knot-cnn",)}})

    @classmethod
    def default(cls, big_gb: float) -> "Sizes":
        return cls(repeats=3, conversion={"small": 3_000, "medium": 12_000, f"multi-GB ({big_gb:g} GB)": knots_in(big_gb)},
                   reading_n=24_000, reading_proteins=20_000, cycle_lengths=(1, 2, 4, 8, 16, None),
                   shard_counts=(1, 2, 4, 8, 16, 32), shards=16,
                   memory_sizes=(1_500, 6_000, 24_000, knots_in(6)), memory_steps=16,
                   storage={"images": 6_000, "sequences": 20_000, "arrays": 300},
                   extra={"training": {"knots_per_class": 1_000, "knot_size": 64, "n_proteins": 6_000,
                                       "max_length": 660, "epochs": 3, "repeats": 2, "large_proteins": 80_000},
                          "seed_scale": 300_000})


def _diagnose(s: Sizes, cache: str) -> dict[str, Any]:
    from bench import inputs
    from shardkit.train import diagnose

    steps, warmup = s.extra.get("diagnose_steps", (10, 3))
    jobs = {"knot-cnn": inputs.dataset(cache, "knots", s.reading_n, "--num-shards", str(s.shards)),
            "protein-cnn": inputs.dataset(cache, "proteins", s.reading_proteins)}
    runs = {m: diagnose.diagnose(path, m, batch_size=s.batch_size, steps=steps, warmup=warmup) for m, path in jobs.items()}
    return {"runs": {m: {**asdict(d), "input_bound": d.input_bound, "verdict": d.verdict()} for m, d in runs.items()},
            "steps": steps, "batch_size": s.batch_size}


def _module(name: str) -> Any:
    return importlib.import_module(f"bench.{name}")


SECTIONS: dict[str, Callable[[Sizes, str, argparse.Namespace], dict[str, Any]]] = {
    "storage": lambda s, cache, a: _module("conversion").storage(cache, **s.storage),
    "reading": lambda s, cache, a: _module("reading").measure(cache, s),
    "memory": lambda s, cache, a: _module("reading").memory(
        cache, s.memory_sizes, steps=s.memory_steps, modes=s.extra.get("memory_modes", _module("reading").MODES),
        parallel=s.extra.get("memory_parallel", 1)),
    "conversion": lambda s, cache, a: _module("conversion").measure(cache, s.conversion, s.repeats),
    "fast_paths": lambda s, cache, a: _module("conversion").fast_paths(cache, s.fast_path_rows, s.repeats),
    "plan_scale": lambda s, cache, a: _module("plan_scale").measure(cache, **s.plan_scale),
    "epoch_order": lambda s, cache, a: _module("order").measure(cache, s.epoch_order, batch_size=s.batch_size),
    "object_store": lambda s, cache, a: _module("object_store").measure(**s.object_store),
    "diagnose": lambda s, cache, a: _diagnose(s, cache),
    "rows": lambda s, cache, a: {"files_per_s": _module("rows").measure(cache, **s.rows, repeats=s.repeats), **s.rows,
                                 "repeats": s.repeats},
    "peers": lambda s, cache, a: _module("peers").measure(cache, s.repeats),
    "gpu": lambda s, cache, a: _module("gpu").measure(
        cache, os.environ["KERAS_BACKEND"], a.gpu_precisions.split(","), [int(b) for b in a.gpu_batch_sizes.split(",")],
        a.gpu_sequence_encoding, **s.gpu, steps_per_execution=[int(n) if n.isdigit() else n for n in a.gpu_steps_per_execution.split(",")]),
}
ON_REQUEST = {"gpu", "object_store", "rows"}  # measured only when named in --only (gpu: on a GPU machine, its
# inputs carried in --cache; object_store: quoted by hand in docs/benchmarks.md; rows: table after its hand-written block)
NOT_QUICK = {"peers"}  # minutes of conversions even at --quick sizes: in a --quick run only when named in --only


def merge_gpu(paths: list[str]) -> dict[str, Any]:
    """Several runs' GPU sections (batch sizes, input encodings) as one section whose rows carry their settings."""
    runs = [json.loads(Path(path).read_text(encoding="utf-8")) for path in paths]
    runs = [r.get("gpu", r) for r in runs]  # results files, or GPU-only ones as in bench/results/
    return {**{k: v for k, v in runs[0].items() if k not in ("rows", "batch_size")},
            "rows": [row for r in runs for row in r.get("rows", [])]}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.run_all", description=__doc__.splitlines()[0])
    p.add_argument("--quick", action="store_true", help="tiny sizes, one repeat: a smoke run, not a measurement")
    p.add_argument("--big-gb", type=float, default=2.0, help="size of the multi-GB conversion input (default 2)")
    p.add_argument("--repeats", type=int, help="runs per measurement (median reported)")
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
    args.out = args.out or os.path.join(REPO, "bench/out" if args.quick else "docs", "benchmarks.md")
    sizes = Sizes.quick() if args.quick else Sizes.default(args.big_gb)
    if args.repeats:
        sizes = Sizes(**{**asdict(sizes), "repeats": args.repeats})
    if args.gpu_prepare:
        print(json.dumps(_module("gpu").datasets(args.cache, sizes.gpu["n_knots"], sizes.gpu["n_proteins"]), indent=1))
        return 0

    results_path = args.results or os.path.join(os.path.dirname(os.path.abspath(args.out)), "benchmarks.json")
    only = [x for x in (args.only or "").split(",") if x]
    if unknown := set(only) - set(SECTIONS):
        p.error(f"unknown sections {sorted(unknown)}; choose from {list(SECTIONS)}")
    if "gpu" in only:
        gpu_backend = _module("gpu").pick_backend() if args.gpu_backend == "auto" else args.gpu_backend
        os.environ["KERAS_BACKEND"] = gpu_backend  # before the first keras import
    results: dict[str, Any] = json.loads(Path(results_path).read_text(encoding="utf-8")) \
        if (only or args.render_only) and os.path.exists(results_path) else {}
    if not args.render_only:
        os.makedirs(args.cache, exist_ok=True)
        start = time.perf_counter()
        machine = describe() if set(only) != {"gpu"} else {}
        if not only or "machine" not in results:
            results["machine"] = machine
        timings = {}
        for name, fn in SECTIONS.items():
            if (only and name not in only) or (not only and (name in ON_REQUEST or (args.quick and name in NOT_QUICK))):
                continue
            t0 = time.perf_counter()
            print(f"[bench] {name} ...", flush=True)
            try:
                section = fn(sizes, args.cache, args)
                if section is None:  # skipped (it said why in one line): the last measurement, if any, stays
                    continue
                results[name] = {**section, "measured_utc": now_utc()}
                if only and name != "gpu":  # measured apart from the others: say where
                    results[name]["machine"] = {k: machine[k] for k in ("cpu", "usable_cores", "load_average_at_start")}
            except Exception:
                results[name] = {"error": traceback.format_exc()}
                print(results[name]["error"], file=sys.stderr, flush=True)
            timings[name] = round(time.perf_counter() - t0, 1)
            print(f"[bench] {name} done in {timings[name]:.0f} s", flush=True)
        old = results.get("config", {})  # with --only, the run that measured the other sections keeps its settings
        results["config"] = {"quick": args.quick, "repeats": sizes.repeats, "sizes": asdict(sizes),
                             "total_minutes": round((time.perf_counter() - start) / 60, 1), **(old if only else {}),
                             "section_seconds": {**old.get("section_seconds", {}), **timings}}
    if args.gpu_results:
        results["gpu"] = merge_gpu(args.gpu_results)
    os.makedirs(os.path.dirname(os.path.abspath(results_path)), exist_ok=True)
    Path(results_path).write_text(json.dumps(results, indent=1, sort_keys=True), encoding="utf-8")
    if not args.no_render:  # from the file, so that the report renders the same as from the committed JSON
        report.render(json.loads(Path(results_path).read_text(encoding="utf-8")), args.out)
    print(f"[bench] wrote {results_path}" + ("" if args.no_render else f" and {args.out}"))
    return 1 if any(isinstance(v, dict) and "error" in v for k, v in results.items() if k in SECTIONS) else 0


if __name__ == "__main__":
    raise SystemExit(main())
