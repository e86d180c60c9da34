"""Render a benchmark results dict as docs/benchmarks.md plus PNG plots under docs/img/.

``python -m bench.report RESULTS.json [--gpu-results GPU.json] [--out docs/benchmarks.md]`` re-renders
without re-measuring (e.g. to add the GPU table measured on another machine).
"""

from __future__ import annotations

import argparse
import json
import os
from typing import Any, Callable, Sequence

from . import findings, targets

GB, MB = 1e9, 1e6
IMG_DIR = "img"


def md_table(headers: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    """A GitHub markdown table."""
    lines = ["| " + " | ".join(headers) + " |", "|" + "|".join("---" for _ in headers) + "|"]
    lines += ["| " + " | ".join(str(c) for c in row) + " |" for row in rows]
    return "\n".join(lines)


def _num(x: Any, fmt: str = ",.0f") -> str:
    return "-" if x is None else format(x, fmt)


def _plt():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _save(fig, img_dir: str, name: str) -> str:
    os.makedirs(img_dir, exist_ok=True)
    fig.tight_layout()
    fig.savefig(os.path.join(img_dir, name), dpi=110)
    _plt().close(fig)
    return f"![{name}]({IMG_DIR}/{name})"


def _failed(section: dict | None) -> str | None:
    if section is None:
        return "_Not measured in this run._"
    if "error" in section:
        return f"_This section failed in this run:_\n\n```\n{section['error'][-1500:]}\n```"
    return None


def render_machine(results: dict) -> str:
    m = results.get("machine", {})
    cfg = results.get("config", {})
    pkgs = ", ".join(f"{k} {v}" for k, v in m.get("packages", {}).items())
    rows = [
        ("CPU", f"{m.get('cpu', '?')} ({m.get('usable_cores', '?')} usable cores, "
                f"{m.get('logical_cores', '?')} logical)"),
        ("RAM", f"{m.get('ram_gib', '?')} GiB"),
        ("OS / Python", f"{m.get('os', '?')} / Python {m.get('python', '?')}"),
        ("Libraries", pkgs),
        ("shardkit commit", m.get("commit", "?")),
        ("Load average at start", ", ".join(str(x) for x in m.get("load_average_at_start", []))),
        ("Run", f"{m.get('date_utc', '?')}; {'--quick smoke sizes' if cfg.get('quick') else 'default sizes'}, "
                f"median of {cfg.get('repeats', '?')} runs; sections measured at "
                + ", ".join(f"{k} {str((results.get(k) or {}).get('measured_utc', '?'))[11:16]} ({v / 60:.1f} min)"
                            for k, v in cfg.get("section_seconds", {}).items())),
    ]
    return md_table(("", ""), rows)


def render_targets(results: dict) -> str:
    rows = [(v.target, v.goal, v.measured, f"**{v.result}**" if v.result.startswith(("PASS", "MISS")) else v.result)
            for v in targets.evaluate(results)]
    return md_table(("Target", "Goal", "Measured", "Result"), rows)


def render_conversion(results: dict, img_dir: str) -> str:
    sec = results.get("conversion")
    if (msg := _failed(sec)) is not None:
        return msg
    out = []
    rows = []
    for size in sec["sizes"]:
        runs = size["runs"]
        hand = runs.get("hand loop", {}).get("rows_per_s")
        hand_phase = runs.get("hand loop", {}).get("write_phase_rows_per_s")
        for name, r in runs.items():
            rel = f"{r['rows_per_s'] / hand:.2f}x" if hand and r.get("rows_per_s") else "-"
            ph = r.get("write_phase_rows_per_s")
            rel_ph = f"{ph / hand_phase:.2f}x" if ph and hand_phase else "-"
            rows.append((size["label"], f"{size['rows']:,}", f"{size['input_bytes'] / GB:.2f}", name,
                         _num(r.get("seconds"), ".1f"), _num(r.get("rows_per_s")), _num(r.get("mb_per_s"), ".1f"),
                         rel, _num(ph), rel_ph,
                         _num(r["peak_rss_bytes"] / GB if r.get("peak_rss_bytes") else None, ".2f")))
    out.append(md_table(("Size", "Rows", "GB in", "Job", "Wall s", "Rows/s", "MB/s", "vs hand loop",
                         "Write-phase rows/s", "vs hand loop (write phase)", "Peak RSS GB"), rows))
    plt = _plt()
    names = list(dict.fromkeys(n for s in sec["sizes"] for n in s["runs"]))
    colors = {name: f"C{i}" for i, name in enumerate(names)}
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(10, 3.8))
    for name in names:
        pts = [(s["rows"], s["runs"][name]) for s in sec["sizes"] if name in s["runs"]]
        ax1.plot([p[0] for p in pts], [p[1]["rows_per_s"] for p in pts], "o-", color=colors[name], label=name)
        phase = [(n, r["write_phase_rows_per_s"]) for n, r in pts if r.get("write_phase_rows_per_s")]
        if phase and name != "hand loop":
            ax1.plot([p[0] for p in phase], [p[1] for p in phase], "s--", color=colors[name],
                     label=f"{name}, write phase")
        rss = [(n, r["peak_rss_bytes"] / GB) for n, r in pts if r.get("peak_rss_bytes")]
        if rss:
            ax2.plot([p[0] for p in rss], [p[1] for p in rss], "o-", color=colors[name], label=name)
    for ax, title, ylabel in ((ax1, "Conversion throughput vs N", "rows/s"),
                              (ax2, "Peak RSS (process tree) vs N", "GB")):
        ax.set_xscale("log")
        ax.set_xlabel("rows (N)")
        ax.set_ylabel(ylabel)
        ax.set_title(title)
        ax.set_ylim(bottom=0)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7, loc="best")
    out.append(_save(fig, img_dir, "conversion.png"))
    if sec.get("notes"):
        out.append(sec["notes"])
    return "\n\n".join(out)


def _bar(ax, labels: Sequence[str], values: Sequence[float], xlabel: str, colors: Any = "tab:blue") -> None:
    ax.barh(range(len(values)), values, color=colors)
    ax.set_yticks(range(len(values)), labels)
    ax.invert_yaxis()
    ax.set_xlabel(xlabel)
    ax.grid(axis="x", alpha=0.3)


def render_reading(results: dict, img_dir: str) -> str:
    sec = results.get("reading")
    if (msg := _failed(sec)) is not None:
        return msg
    out = []
    for part in ("readers", "cycle_length", "shard_count", "compression", "epoch"):
        if isinstance(sec.get(part), dict) and "error" in sec[part]:
            out.append(f"_Part `{part}` failed in this run:_\n\n```\n{sec[part]['error'][-1200:]}\n```")
            sec = {**sec, part: None}
    readers = sec.get("readers") or {}
    order = ("shardkit", "shardkit, first epoch (incl. pipeline start)", "seed-000 generator", "PyDataset over h5py",
             "in-memory numpy", "in-memory numpy gather (1 thread)")
    readers = dict(sorted(readers.items(), key=lambda kv: order.index(kv[0]) if kv[0] in order else len(order)))
    if readers:
        mem = readers.get("in-memory numpy", {}).get("examples_per_s")
        gen = readers.get("seed-000 generator", {}).get("examples_per_s")
        rows = [(name, "yes" if r.get("shuffles") else "no", _num(r.get("examples_per_s")),
                 _num(r.get("mb_per_s"), ".1f"), f"{r['examples_per_s'] / gen:.2f}x" if gen else "-",
                 f"{r['examples_per_s'] / mem:.2f}x" if mem else "-")
                for name, r in readers.items()]
        out.append(f"Reader throughput on {sec.get('dataset', 'the knot images')}, "
                   f"batch {sec.get('batch_size', '?')} (median of {sec.get('repeats', '?')} passes):")
        out.append(md_table(("Reader", "Shuffles globally", "Examples/s", "MB/s", "vs seed generator",
                             "vs in-memory"), rows))
        plt = _plt()
        fig, ax = plt.subplots(figsize=(7, 0.5 + 0.5 * len(readers)))
        _bar(ax, list(readers), [r["examples_per_s"] for r in readers.values()], "examples/s (log scale)")
        ax.set_xscale("log")
        ax.set_title("Reader throughput")
        out.append(_save(fig, img_dir, "reading.png"))
    sweeps = [(k, t) for k, t in (("cycle_length", "interleave cycle length"), ("shard_count", "shard count"))
              if isinstance(sec.get(k), list) and sec[k]]
    if sweeps:
        plt = _plt()
        fig, axes = plt.subplots(1, len(sweeps), figsize=(5 * len(sweeps), 3.5), squeeze=False)
        for ax, (key, title) in zip(axes[0], sweeps):
            pts = sec[key]
            out.append(f"Throughput vs {title}:")
            out.append(md_table((title, "Examples/s", "MB/s"),
                                [(p["x"], _num(p["examples_per_s"]), _num(p.get("mb_per_s"), ".1f")) for p in pts]))
            numeric = [p for p in pts if isinstance(p["x"], int)]
            xs = [p["x"] for p in numeric]
            ax.plot(xs, [p["examples_per_s"] for p in numeric], "o-")
            for p in pts:
                if not isinstance(p["x"], int):
                    ax.axhline(p["examples_per_s"], color="gray", linestyle="--", label=f"{p['x']} (AUTOTUNE)")
                    ax.legend(fontsize=8)
            ax.set_xscale("log", base=2)
            ax.set_xticks(xs, [str(x) for x in xs])
            ax.set_xlabel(title)
            ax.set_ylabel("examples/s")
            ax.set_ylim(bottom=0)
            ax.set_title(f"Reader throughput vs {title}")
            ax.grid(alpha=0.3)
        out.append(_save(fig, img_dir, "reading_sweeps.png"))
    if isinstance(sec.get("compression"), list):
        comp = sec["compression"]
        out.append("GZIP vs uncompressed shards (same data):")
        out.append(md_table(("Dataset", "Shards", "Bytes on disk", "Examples/s", "MB/s (decoded)"),
                            [(r["dataset"], r["compression"], f"{r['bytes']:,}", _num(r["examples_per_s"]),
                              _num(r.get("mb_per_s"), ".1f")) for r in comp]))
    epoch = sec.get("epoch") or {}
    if epoch:
        rows = []
        for model, runs in epoch.items():
            mem = runs.get("in-memory", {})
            for name, r in runs.items():
                if not isinstance(r, dict):
                    continue
                rows.append((model, name, _num(r["seconds"], ".1f"),
                             f"{r['seconds'] / mem['seconds']:.2f}x" if mem else "-",
                             _num(r["peak_rss_bytes"] / GB, ".2f"),
                             f"{r['peak_rss_bytes'] / mem['peak_rss_bytes']:.2f}x" if mem else "-",
                             _num(r["data_rss_bytes"] / GB if r.get("data_rss_bytes") is not None else None, ".2f")))
        out.append("Whole-epoch CPU training, fed by shardkit vs in-memory arrays (peak RSS of the process):")
        out.append(md_table(("Model / data", "Input", "Epoch s", "vs in-memory", "Peak RSS GB", "vs in-memory",
                             "Data RSS GB"), rows))
        out.append("Data RSS = peak RSS minus the same process's RSS once TensorFlow and the compiled model were up.")
    if sec.get("notes"):
        out.append(sec["notes"])
    return "\n\n".join(out)


def render_storage(results: dict, img_dir: str) -> str:
    sec = results.get("storage")
    if (msg := _failed(sec)) is not None:
        return msg
    out = []
    rows = [(name, r["feature"], r["compression"], f"{r['examples']:,}", _num(r["payload_bytes_per_example"]),
             _num(r["bytes_per_example"])) for name, r in sec["encodings"].items()]
    out.append(md_table(("Encoding (shardkit)", "Feature", "Compression", "Examples", "Decoded bytes/example",
                         "Bytes/example on disk"), rows))
    out.append("Naive baselines (bytes per example of the arrays the seed users built):")
    out.append(md_table(("Baseline", "Bytes/example"), [(k, f"{v:,}") for k, v in sec["naive"].items()]))
    p = sec["seed001_projection"]
    out.append(f"Projected size of seed 001's data set ({p['sequences']:,} sequences of length {p['length']}):")
    base = p["one-hot float32"]
    out.append(md_table(("Representation", "Projected size", "vs float32 one-hot"),
                        [(k, f"{p[k] / GB:.2f} GB", f"1/{base / p[k]:.0f}" if p[k] < base else f"{p[k] / base:.1f}x")
                         for k in ("one-hot float64", "one-hot float32", "shardkit codes", "shardkit codes + GZIP")]))
    plt = _plt()
    labels = [*sec["encodings"], *sec["naive"]]
    values = [*(r["bytes_per_example"] for r in sec["encodings"].values()), *sec["naive"].values()]
    fig, ax = plt.subplots(figsize=(8, 0.6 + 0.4 * len(labels)))
    colors = ["tab:blue"] * len(sec["encodings"]) + ["tab:red"] * len(sec["naive"])
    _bar(ax, labels, values, "bytes per example (log scale); blue: shardkit records, red: naive arrays", colors)
    ax.set_xscale("log")
    ax.set_title("Storage per example")
    out.append(_save(fig, img_dir, "storage.png"))
    return "\n\n".join(out)


def render_memory(results: dict, img_dir: str) -> str:
    sec = results.get("memory")
    if (msg := _failed(sec)) is not None:
        return msg
    points = sec["points"]
    modes = list(dict.fromkeys(k for p in points for k in p if k not in ("n", "data_bytes", "step_s")))

    def cells(p: dict) -> list[str]:
        steps = p.get("step_s") or {}
        return [c for m in modes for c in ((_num(p[m] / GB, ".2f"), _num(1e3 * steps[m], ".0f") if steps.get(m) else "-")
                                           if p.get(m) else ("not run", "-"))]

    out = [f"{sec.get('description', '')}"]
    out.append(md_table(("N", "Decoded data GB", *(h for m in modes for h in (f"{m} peak RSS GB", f"{m} ms/step"))),
                        [(f"{p['n']:,}", f"{p['data_bytes'] / GB:.2f}", *cells(p)) for p in points]))
    plt = _plt()
    fig, ax = plt.subplots(figsize=(6.5, 4))
    for m in modes:
        ran = [p for p in points if p.get(m)]
        ax.plot([p["n"] for p in ran], [p[m] / GB for p in ran], "o-", label=m)
    ax.set_xlabel("training examples (N)")
    ax.set_ylabel("peak RSS, GB")
    ax.set_ylim(bottom=0)
    ax.set_title("Training peak RSS vs N")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    out.append(_save(fig, img_dir, "memory.png"))
    proj = sec.get("projection") or {}
    if proj:
        rows = []
        for m in modes:
            e = proj.get(m)
            if not e or m == "shardkit":
                continue
            rows.append((m, f"{e['intercept_bytes'] / GB:.2f}", f"{e['bytes_per_example'] / 1e3:,.1f}",
                         f"{e['at_seed000_bytes'] / GB:.1f}",
                         f"{e['n_for_one_tenth']:,.0f}" if "n_for_one_tenth" in e else "-"))
        ours = [p["shardkit"] for p in points if p.get("shardkit")]
        out.append(f"shardkit's peak stays between {min(ours) / GB:.2f} and {max(ours) / GB:.2f} GB from N="
                   f"{points[0]['n']:,} to N={points[-1]['n']:,} ({points[-1]['n'] / points[0]['n']:.0f}x the data). "
                   f"The in-memory modes are fitted with a straight line RSS = a + b*N and extrapolated to seed "
                   f"000's {proj['seed000_images']:,} images; last column: the N from which shardkit's largest peak "
                   "is at most 1/10 of that mode's:")
        out.append(md_table(("Mode", "a (GB)", "b (KB/example)", f"Projected at {proj['seed000_images']:,} (GB)",
                             "N where shardkit <= 1/10"), rows))
    if sec.get("notes"):
        out.append(sec["notes"])
    return "\n\n".join(out)


def render_gpu(results: dict, img_dir: str) -> str:
    sec = results.get("gpu")
    if sec is None:
        return ("_No GPU results in this run._ Convert the inputs with `python -m bench.gpu_bench --prepare "
                "bench/out/gpu-data`, measure on a GPU machine with `KERAS_BACKEND=jax python -m bench.gpu_bench "
                "--data bench/out/gpu-data --out gpu.json` (or the TensorFlow backend where a TensorFlow GPU build "
                "exists), then re-render: `python -m bench.report docs/benchmarks.json --gpu-results gpu.json`.")
    if (msg := _failed(sec)) is not None:
        return msg
    out = [f"Measured on {sec.get('device', '?')}, Keras backend `{sec.get('backend', '?')}`, "
           f"{sec.get('date_utc', '')}. fit ratio = reader-fed `model.fit` time / `model.fit` on one batch already "
           "on the device, over the same steps after warm-up: the input pipeline's cost as training sees it."]
    from .gpu_bench import markdown_table

    out.append(markdown_table(sec))
    rows = sec.get("rows", [])
    if rows:
        plt = _plt()
        fig, ax = plt.subplots(figsize=(7, 0.8 + 0.6 * len(rows)))
        labels = [f"{r['model']} {r.get('sequence_encoding') or ''} b{r['batch_size']} {r['precision']}" for r in rows]
        y = range(len(rows))
        ax.barh([i - 0.2 for i in y], [r.get("fit_synthetic_step_ms", r["synthetic_step_ms"]) for r in rows], 0.4,
                label="model.fit, batch on device")
        ax.barh([i + 0.2 for i in y], [r["fit_step_ms"] for r in rows], 0.4, label="model.fit, shardkit reader")
        ax.set_yticks(list(y), labels)
        ax.invert_yaxis()
        ax.set_xlabel("ms per training step")
        ax.legend(fontsize=8)
        ax.grid(axis="x", alpha=0.3)
        out.append(_save(fig, img_dir, "gpu.png"))
    if sec.get("notes"):
        out.append(sec["notes"])
    return "\n\n".join(out)


INTRO = """# shardkit benchmarks

Generated by `python -m bench.run_all` (do not edit by hand; re-run it). Every ratio below compares
implementations measured side by side in the same run on the same data, each number the median of several
runs. Sections follow issue 4: conversion, reading, storage, memory, GPU, and the `shardkit-train bench`
diagnosis for your own dataset."""

REPRODUCE = """## Reproduce

```
python -m bench.run_all                 # default sizes, ~20-25 min on 2 cores (conversion at >= 2 GB)
python -m bench.run_all --big-gb 6      # the 6 GB converter-memory target run
python -m bench.run_all --quick         # smoke run, tiny sizes, < 1 min of measuring
python -m bench.run_all --only storage,memory   # some sections; others are kept from docs/benchmarks.json
python -m bench.gpu_bench --prepare bench/out/gpu-data   # convert the GPU inputs (~35 MB, needs Beam)
KERAS_BACKEND=jax python -m bench.gpu_bench --data bench/out/gpu-data --out gpu.json   # on the GPU machine
python -m bench.report docs/benchmarks.json --gpu-results gpu.json   # re-render with GPU numbers
```

Inputs are the built-in examples (`shardkit.convert.examples`), generated once into
`$SHARDKIT_BENCH_CACHE` (default `/tmp/shardkit-bench-cache`); the raw numbers are in `docs/benchmarks.json`."""

DIAGNOSE = """```
shardkit-train bench DATASET [--model knot-cnn|protein-cnn|sequence-lstm|pkg.module:build] [--batch-size B]
```

measures, on your dataset and model, (a) reader-only throughput (examples/s of the shardkit reader with
nothing consuming it), (b) the model's training rate on one batch held in memory (compute only), and
(c) training fed by the reader, and prints a one-line verdict. When training is input-bound, raise the
interleave parallelism / cycle length, use more (smaller) shards, keep images uint8 (rescale in the model)
and avoid GZIP for image data; when it is not, a faster input pipeline will not speed training up."""


def render_diagnose(results: dict, img_dir: str) -> str:
    sec = results.get("diagnose")
    if sec is not None and (msg := _failed(sec)) is not None:
        return DIAGNOSE + "\n\n" + msg
    if not sec:
        return DIAGNOSE
    rows = [(m, os.path.basename(r["dataset"].rstrip("/")), _num(r["reader_examples_per_s"]),
             _num(r["compute_examples_per_s"]), _num(r["fed_examples_per_s"]),
             f"{r['fed_examples_per_s'] / r['compute_examples_per_s']:.0%}", "yes" if r["input_bound"] else "no")
            for m, r in sec["runs"].items()]
    verdicts = "\n".join(f"    $ shardkit-train bench {os.path.basename(r['dataset'].rstrip('/'))} --model {m} "
                          f"--batch-size {sec['batch_size']}\n    {r['verdict']}" for m, r in sec["runs"].items())
    return "\n\n".join([DIAGNOSE, f"On this machine ({sec['steps']} timed steps each, batch {sec['batch_size']}):",
                         md_table(("Model", "Dataset", "Reader-only ex/s", "Compute-only ex/s", "Reader-fed ex/s",
                                   "Fed / compute", "Input-bound"), rows), verdicts])


SECTIONS: tuple[tuple[str, Callable[[dict, str], str]], ...] = (
    ("## 1. Conversion: Beam job vs hand-written TFRecordWriter loop", render_conversion),
    ("## 2. Reading: shardkit reader vs seed-000 generator vs PyDataset vs in-memory", render_reading),
    ("## 3. Storage: bytes per example", render_storage),
    ("## 4. Memory: training peak RSS vs N", render_memory),
    ("## 5. GPU: step time fed by shardkit vs synthetic tensors on the device", render_gpu),
    ("## 6. Is my training input-bound? `shardkit-train bench`", render_diagnose),
)


def render(results: dict, out_md: str) -> str:
    """Write the markdown (and its plots beside it under img/) and return the markdown text."""
    img_dir = os.path.join(os.path.dirname(os.path.abspath(out_md)), IMG_DIR)
    parts = [INTRO, "## Machine", render_machine(results), "## Targets", render_targets(results)]
    try:
        notes = findings.render(results)
    except Exception as e:  # findings are commentary: never lose the report over them
        notes = f"_Could not derive findings: {type(e).__name__}: {e}_"
    if notes:
        parts += ["### What the numbers say", notes]
    for title, fn in SECTIONS:
        parts.append(title)
        try:
            parts.append(fn(results, img_dir))
        except Exception as e:  # a malformed section must not lose the rest of the report
            parts.append(f"_Could not render this section: {type(e).__name__}: {e}_")
    parts += [REPRODUCE]
    text = "\n\n".join(parts) + "\n"
    os.makedirs(os.path.dirname(os.path.abspath(out_md)), exist_ok=True)
    with open(out_md, "w", encoding="utf-8") as f:
        f.write(text)
    return text


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.report", description=__doc__.splitlines()[0])
    p.add_argument("results", help="results JSON written by bench.run_all (docs/benchmarks.json)")
    p.add_argument("--gpu-results", nargs="+", help="JSON(s) written by bench.gpu_bench --out; merged into the results")
    p.add_argument("--out", default=None, help="markdown path (default: beside the results, benchmarks.md)")
    args = p.parse_args(argv)
    with open(args.results, encoding="utf-8") as f:
        results = json.load(f)
    if args.gpu_results:
        from .gpu_bench import load_results

        results["gpu"] = load_results(args.gpu_results)
        with open(args.results, "w", encoding="utf-8") as f:
            json.dump(results, f, indent=1, sort_keys=True)
    out = args.out or os.path.join(os.path.dirname(os.path.abspath(args.results)), "benchmarks.md")
    render(results, out)
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
