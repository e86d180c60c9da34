"""Run every shardkit benchmark and write docs/benchmarks.md (+ docs/img/*.png, docs/benchmarks.json).

``python -m bench.run_all`` (default sizes, ~20-25 min on 2 cores), ``--quick`` (smoke sizes),
``--big-gb 6`` (the 6 GB converter target), ``--only storage,memory`` (re-measure some sections and keep
the others from the previous results), ``--gpu-results gpu.json`` (merge bench.gpu_bench output).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
import traceback
from dataclasses import asdict, dataclass, field
from typing import Any, Callable

if __package__ in (None, ""):  # ``python bench/run_all.py``
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    __package__ = "bench"

from bench import machine, report  # noqa: E402
from bench.datasets import DEFAULT_CACHE  # noqa: E402
from bench.measure import REPO  # noqa: E402

IMAGE_BYTES = 128 * 128 * 3


def knots_in(gb: float) -> int:
    """Knot images (whole classes of three) in ``gb`` GB of 128x128x3 pixels: the 6 GB input serves both the
    conversion target and the memory sweep's largest N."""
    return int(gb * 1e9 / IMAGE_BYTES) // 3 * 3


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
    extra: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def quick(cls) -> "Sizes":
        return cls(repeats=1, conversion={"small": 120, "medium": 240}, reading_n=240, reading_proteins=200,
                   cycle_lengths=(1, 4, None), shard_counts=(1, 4), shards=4,
                   storage={"images": 240, "sequences": 200, "arrays": 20},
                   memory_sizes=(120, 240), memory_steps=1, batch_size=32,
                   extra={"memory_modes": ("shardkit", "in-memory"), "memory_parallel": 2, "diagnose_steps": (2, 1),
                          "training": {"knots_per_class": 16, "knot_size": 32, "n_proteins": 100, "max_length": 64,
                                       "epochs": 2, "repeats": 1, "models": ("knot-cnn",)}})

    @classmethod
    def default(cls, big_gb: float) -> "Sizes":
        big = knots_in(big_gb)
        return cls(repeats=3, conversion={"small": 3_000, "medium": 12_000, f"multi-GB ({big_gb:g} GB)": big},
                   reading_n=24_000, reading_proteins=20_000, cycle_lengths=(1, 2, 4, 8, 16, None),
                   shard_counts=(1, 2, 4, 8, 16, 32), shards=16,
                   memory_sizes=(1_500, 6_000, 24_000, knots_in(6)), memory_steps=16,
                   storage={"images": 6_000, "sequences": 20_000, "arrays": 300},
                   extra={"training": {"knots_per_class": 1_000, "knot_size": 64, "n_proteins": 6_000,
                                       "max_length": 660, "epochs": 3, "repeats": 2, "large_proteins": 80_000}})


def section_conversion(s: Sizes, cache: str) -> dict[str, Any]:
    from bench import conversion

    return conversion.measure(cache, s.conversion, s.repeats)


def section_reading(s: Sizes, cache: str) -> dict[str, Any]:
    from bench import reading

    return reading.measure(cache, s)


def section_storage(s: Sizes, cache: str) -> dict[str, Any]:
    from bench import storage_bench

    return storage_bench.measure(cache, s.storage["images"], s.storage["sequences"], s.storage["arrays"])


def section_memory(s: Sizes, cache: str) -> dict[str, Any]:
    from bench import memory_bench

    return memory_bench.measure(cache, s.memory_sizes, steps=s.memory_steps,
                                modes=s.extra.get("memory_modes", memory_bench.MODES),
                                parallel=s.extra.get("memory_parallel", 1))


def section_diagnose(s: Sizes, cache: str) -> dict[str, Any]:
    from dataclasses import asdict as as_dict

    from bench import datasets
    from shardkit.train import diagnose

    steps, warmup = s.extra.get("diagnose_steps", (10, 3))
    jobs = {
        "knot-cnn": datasets.knots_dataset(cache, s.reading_n, extra=["--num-shards", str(s.shards)],
                                           tag=f"-shards{s.shards}"),
        "protein-cnn": datasets.proteins_dataset(cache, s.reading_proteins),
    }
    runs = {}
    for model, path in jobs.items():
        d = diagnose.diagnose(path, model, batch_size=s.batch_size, steps=steps, warmup=warmup)
        runs[model] = {**as_dict(d), "input_bound": d.input_bound, "verdict": d.verdict()}
    return {"runs": runs, "steps": steps, "batch_size": s.batch_size}


SECTIONS: dict[str, Callable[[Sizes, str], dict[str, Any]]] = {
    "storage": section_storage,
    "reading": section_reading,
    "memory": section_memory,
    "conversion": section_conversion,
    "diagnose": section_diagnose,
}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.run_all", description=__doc__.splitlines()[0])
    p.add_argument("--quick", action="store_true", help="tiny sizes, one repeat: a smoke run, not a measurement")
    p.add_argument("--big-gb", type=float, default=2.0, help="size of the multi-GB conversion input (default 2)")
    p.add_argument("--repeats", type=int, help="runs per measurement (median reported)")
    p.add_argument("--only", help=f"comma-separated sections to measure, of {','.join(SECTIONS)}; the others "
                                   "are kept from --results")
    p.add_argument("--cache", default=DEFAULT_CACHE, help="where generated inputs and converted datasets live")
    p.add_argument("--out", default=os.path.join(REPO, "docs", "benchmarks.md"))
    p.add_argument("--results", help="results JSON (default: beside --out, benchmarks.json)")
    p.add_argument("--gpu-results", nargs="+", help="JSON(s) from bench.gpu_bench --out: the GPU section")
    p.add_argument("--render-only", action="store_true", help="measure nothing; re-render --results")
    args = p.parse_args(argv)

    results_path = args.results or os.path.join(os.path.dirname(os.path.abspath(args.out)), "benchmarks.json")
    only = [x for x in (args.only or "").split(",") if x]
    unknown = set(only) - set(SECTIONS)
    if unknown:
        p.error(f"unknown sections {sorted(unknown)}; choose from {list(SECTIONS)}")
    results: dict[str, Any] = {}
    if (only or args.render_only) and os.path.exists(results_path):
        with open(results_path, encoding="utf-8") as f:
            results = json.load(f)
    if not args.render_only:
        sizes = Sizes.quick() if args.quick else Sizes.default(args.big_gb)
        if args.repeats:
            sizes = Sizes(**{**asdict(sizes), "repeats": args.repeats})
        os.makedirs(args.cache, exist_ok=True)
        start = time.perf_counter()
        results["machine"] = machine.describe(REPO)
        timings = {}
        for name, fn in SECTIONS.items():
            if only and name not in only:
                continue
            t0 = time.perf_counter()
            print(f"[bench] {name} ...", flush=True)
            try:
                results[name] = fn(sizes, args.cache)
                results[name]["measured_utc"] = machine.now_utc()
            except Exception:
                results[name] = {"error": traceback.format_exc()}
                print(results[name]["error"], file=sys.stderr, flush=True)
            timings[name] = round(time.perf_counter() - t0, 1)
            print(f"[bench] {name} done in {timings[name]:.0f} s", flush=True)
        results["config"] = {"quick": args.quick, "repeats": sizes.repeats, "sizes": asdict(sizes),
                             "section_seconds": {**results.get("config", {}).get("section_seconds", {}), **timings},
                             "total_minutes": round((time.perf_counter() - start) / 60, 1)}
    if args.gpu_results:
        from bench.gpu_bench import load_results

        results["gpu"] = load_results(args.gpu_results)
    os.makedirs(os.path.dirname(os.path.abspath(results_path)), exist_ok=True)
    with open(results_path, "w", encoding="utf-8") as f:
        json.dump(results, f, indent=1, sort_keys=True)
    report.render(results, args.out)
    print(f"[bench] wrote {args.out} and {results_path}")
    failed = [k for k in SECTIONS if isinstance(results.get(k), dict) and "error" in results[k]]
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main())
