"""Render benchmark results as docs/benchmarks.md (tables, PASS/MISS) and PNG plots under docs/img/. Prose is
written by hand between ``<!-- keep: NAME -->`` and ``<!-- /keep -->`` and put back in its place on every render."""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any, Callable, Sequence

from . import targets

GB = 1e9
IMG_DIR = "img"
KEEP = re.compile(r"<!-- keep: ([\w-]+) -->\n.*?<!-- /keep -->", re.S)
Parts = list[str]  # a section's paragraphs, tables and plot links, in order


def md_table(headers: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    """A GitHub markdown table."""
    lines = ["| " + " | ".join(headers) + " |", "|" + "|".join("---" for _ in headers) + "|"]
    return "\n".join(lines + ["| " + " | ".join(str(c) for c in row) + " |" for row in rows])


def _num(x: Any, fmt: str = ",.0f") -> str:
    return "-" if x is None else format(x, fmt)


def _x(a: float | None, b: float | None, fmt: str = ".2f") -> str:
    return f"{a / b:{fmt}}x" if a and b else "-"


def _gb(x: float | None) -> str:
    return _num(x / GB if x else None, ".2f")


def _plt() -> Any:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _save(fig: Any, img_dir: str, name: str) -> str:
    os.makedirs(img_dir, exist_ok=True)
    fig.tight_layout()
    fig.savefig(os.path.join(img_dir, name), dpi=110)
    _plt().close(fig)
    return f"![{name}]({IMG_DIR}/{name})"


def _axes(ax: Any, title: str, xlabel: str, ylabel: str, log: bool = False, legend: int = 0) -> None:
    ax.set(title=title, xlabel=xlabel, ylabel=ylabel, **({"xscale": "log"} if log else {}))
    ax.set_ylim(bottom=0)
    ax.grid(alpha=0.3)
    if legend:
        ax.legend(fontsize=legend)


def _bars(img_dir: str, name: str, title: str, labels: Sequence[str], series: dict[str, Sequence[float]],
          xlabel: str, colors: Any = "tab:blue", log: bool = True) -> str:
    """Horizontal bars, one bar per label and series (side by side, with a legend, when more than one)."""
    one = len(series) == 1
    fig, ax = _plt().subplots(figsize=(8, 0.6 + 0.4 * len(labels)) if one else (7, 0.8 + 0.6 * len(labels)))
    for k, (label, values) in enumerate(series.items()):
        ax.barh([i + (k - (len(series) - 1) / 2) * 0.4 for i in range(len(values))], values, 0.8 if one else 0.4,
                color=colors if one else None, label=label)
    ax.set_yticks(range(len(labels)), labels)
    ax.invert_yaxis()
    ax.set(xlabel=xlabel, title=title, **({"xscale": "log"} if log else {}))
    _ = one or ax.legend(fontsize=8)
    ax.grid(axis="x", alpha=0.3)
    return _save(fig, img_dir, name)


def render_machine(results: dict) -> str:
    m, cfg = results.get("machine", {}), results.get("config", {})
    measured = ", ".join(f"{k} {str((results.get(k) or {}).get('measured_utc', '?'))[11:16]} ({v / 60:.1f} min)"
                         for k, v in cfg.get("section_seconds", {}).items())
    cores = f"{m.get('usable_cores', '?')} usable cores, {m.get('logical_cores', '?')} logical"
    return md_table(("", ""), [
        ("CPU", f"{m.get('cpu', '?')} ({cores})"),
        ("RAM", f"{m.get('ram_gib', '?')} GiB"),
        ("OS / Python", f"{m.get('os', '?')} / Python {m.get('python', '?')}"),
        ("Libraries", ", ".join(f"{k} {v}" for k, v in m.get("packages", {}).items())),
        ("shardkit commit", m.get("commit", "?")),
        ("Load average at start", ", ".join(str(x) for x in m.get("load_average_at_start", []))),
        ("Run", f"{m.get('date_utc', '?')}; {'--quick smoke sizes' if cfg.get('quick') else 'default sizes'}, "
                f"median of {cfg.get('repeats', '?')} runs; sections measured at {measured}"),
    ])


def render_targets(results: dict) -> str:
    return md_table(("Target", "Goal", "Measured", "Result"), [
        (*v[:3], f"**{v.result}**" if v.result.startswith(("PASS", "MISS")) else v.result)
        for v in targets.evaluate(results)])


def render_conversion(sec: dict, results: dict, img_dir: str) -> Parts:
    rows = []
    for size in sec["sizes"]:
        hand = size["runs"].get("hand loop", {})
        rows += [(size["label"], f"{size['rows']:,}", f"{size['input_bytes'] / GB:.2f}", name,
                  _num(r.get("seconds"), ".1f"), _num(r.get("rows_per_s")), _num(r.get("mb_per_s"), ".1f"),
                  _x(r.get("rows_per_s"), hand.get("rows_per_s")), _num(r.get("write_phase_rows_per_s")),
                  _x(r.get("write_phase_rows_per_s"), hand.get("write_phase_rows_per_s")), _gb(r.get("peak_rss_bytes")))
                 for name, r in size["runs"].items()]
    fig, (ax1, ax2) = _plt().subplots(1, 2, figsize=(10, 3.8))
    for i, name in enumerate(dict.fromkeys(n for s in sec["sizes"] for n in s["runs"])):
        pts = [(s["rows"], s["runs"][name]) for s in sec["sizes"] if name in s["runs"]]
        ax1.plot([n for n, _ in pts], [r["rows_per_s"] for _, r in pts], "o-", color=f"C{i}", label=name)
        if name != "hand loop" and (phase := [(n, r["write_phase_rows_per_s"]) for n, r in pts
                                              if r.get("write_phase_rows_per_s")]):
            ax1.plot(*zip(*phase), "s--", color=f"C{i}", label=f"{name}, write phase")
        if rss := [(n, r["peak_rss_bytes"] / GB) for n, r in pts if r.get("peak_rss_bytes")]:
            ax2.plot(*zip(*rss), "o-", color=f"C{i}", label=name)
    _axes(ax1, "Conversion throughput vs N", "rows (N)", "rows/s", log=True, legend=7)
    _axes(ax2, "Peak RSS (process tree) vs N", "rows (N)", "GB", log=True, legend=7)
    return [md_table(("Size", "Rows", "GB in", "Job", "Wall s", "Rows/s", "MB/s", "vs hand loop", "Write-phase rows/s",
                      "vs hand loop (write phase)", "Peak RSS GB"), rows), _save(fig, img_dir, "conversion.png")]


def render_fast_paths(sec: dict, results: dict, img_dir: str) -> Parts:
    rows = [(r["path"], r["library"], _num(r["library_rows_per_s"]), _num(r["shardkit_rows_per_s"]),
             _x(r["shardkit_rows_per_s"], r["library_rows_per_s"])) for r in sec["rows"]]
    return [md_table(("Converter path", "Library call it replaces", "Library rows/s", "shardkit rows/s", "Gain"), rows),
            f"{sec['rows_read']:,} rows in one random permutation, median of {sec['repeats']}."]


def render_plan_scale(sec: dict, results: dict, img_dir: str) -> Parts:
    same = {True: "yes", False: "no"}.get(sec.get("dask_bytes_identical"), "-")
    return [md_table(("Rows", "Shards", "Job graph KB", "Runner", "Wall s", "Rows/s", "Driver peak RSS GB",
                      "All processes peak RSS GB", "Same shard bytes as local"),
                     [(f"{sec['rows']:,}", f"{sec['shards']:,}", f"{sec['job_graph_bytes'] / 1e3:,.1f}", runner,
                       f"{r['seconds']:.1f}", _num(sec["rows"] / r["seconds"]), _gb(r["driver_peak_rss_bytes"]),
                       _gb(r["all_processes_peak_rss_bytes"]), same if runner == "dask" else "-")
                      for runner in ("local", "dask") if (r := sec.get(runner))])]


def render_epoch_order(sec: dict, results: dict, img_dir: str) -> Parts:
    rows = [(r["dataset"], f"{r['train_rows']:,}", r["sharding"], r["train_shards"], f"{r['position_correlation']:.3f}",
             f"{r['cooccurrence_vs_fresh']:.2f}x", _num(r["cold_examples_per_s"]), _num(r["warm_examples_per_s"]))
            for r in sec["rows"]]
    buffer = f", the default {sec['shuffle_buffer_mb']:g} MB shuffle buffer" if "shuffle_buffer_mb" in sec else ""
    return [md_table(("Dataset", "Train rows", "Sharding", "Train shards", "Position correlation, epoch 0 vs 1",
                      "Batch-mates again vs fresh permutation", "Cold ex/s", "Warm ex/s"), rows),
            f"{sec['image']}x{sec['image']}x3 knot images, batch {sec['batch_size']}{buffer}."]


def render_peers(sec: dict, results: dict, img_dir: str) -> Parts:
    rows, base = [], next((r for r in sec["rows"] if r["reader"] == "shardkit"), {})
    for r in sec["rows"]:
        versions = ", ".join(f"{d} {v}" for d, v in r["versions"].items()) or f"shardkit {sec.get('shardkit_version')}"
        if "skipped" in r:
            rows.append((r["system"], versions, f"not run: {r['skipped']}", *["-"] * 9))
            continue
        conv, order = r["conversion"], r.get("order") or {}
        rows.append((r["system"], versions, *(c for k in ("warm_examples_per_s", "cold_examples_per_s")
                                              for c in (_num(r[k]), _x(r[k], base.get(k)))),
                     f"{r['cold_vs_disk']:.2f}x", f"{conv['bytes'] / GB:.3f}", _num(conv["seconds"], ".1f"),
                     f"{r['peak_rss_bytes'] / GB:.2f} / {conv['peak_rss_bytes'] / GB:.2f}",
                     _num(order.get("position_correlation"), ".3f"), _x(order.get("cooccurrence_vs_fresh"), 1)))
    timed = ("; every epoch is timed from its first batch (setup and tracing untimed for every system); "
             if sec.get("from_first_batch") else ", setup included; ")
    return [md_table(("System", "Versions", "Warm ex/s", "vs shardkit", "Cold ex/s", "vs shardkit", "Cold / disk rate",
                      "GB on disk", "Conversion s", "Peak RSS GB read / convert", "Position correlation, epoch 0 vs 1",
                      "Batch-mates again vs fresh"), rows),
            f"{sec['examples']:,} class-sorted 128x128x3 uint8 knot rows, batch {sec['batch_size']}, uint8 out. "
            f"Medians of {sec['repeats']} rounds, the systems round robin, each round in a fresh process with its "
            "libraries already imported. Cold: a new stream's first epoch after `posix_fadvise(DONTNEED)` on every "
            f"file the system reads{timed}disk rate: 4 parallel sequential readers of the same files, evicted, in the "
            "same round; warm: the second epoch of one stream. Order: that stream's epochs 0 and 1. Conversion: wall "
            "time of the converting process, from the HDF5 source."]


def _out_of_core(o: dict, sec: dict, img_dir: str) -> Parts:
    """The headline: GB/s of train shards cold (evicted) and warm, each as a ratio to parallel sequential reads."""
    apart = f" (measured apart, {o['measured_utc']}, load average {o['load_average'][0]:g})" \
        if o.get("measured_utc") else ""
    return [f"Out of core: one training epoch of {o['train_shards']} train shards ({o['train_bytes'] / GB:.2f} GB) "
            f"read with the page cache evicted before each pass (cold; at most {o['resident_after_evict']:.0%} "
            f"still cached) and again right after (warm), round robin, median of {o['repeats']} rounds{apart}:",
            md_table(("Reader", "Cold GB/s", "Cold vs yardstick", "Warm GB/s", "Warm vs yardstick", "Cold / warm"),
                     [(name, _num(r["cold_gb_s"], ".2f"), f"{r['cold_vs_yardstick']:.2f}x", _num(r["warm_gb_s"], ".2f"),
                       f"{r['warm_vs_yardstick']:.2f}x", _x(r["cold_gb_s"], r["warm_gb_s"]))
                      for name, r in o["rows"].items()])]


def _full_scale(q: dict, sec: dict, img_dir: str) -> Parts:
    yard, gb = next(iter(q["rows"])), q["input_bytes"] / GB
    rounds = f"median of {q['repeats']} rounds, round robin" if q.get("repeats", 1) > 1 else "one pass each"
    return [f"{q['images']:,} class-sorted knot images of 128x128x3, cold (the epochs: {rounds}):",
            md_table(("Step", "GB", "Seconds", "GB/s", "Ratio"), [
                ("`cp` of the HDF5 input", f"{gb:.2f}", f"{q['cp_s']:.1f}", f"{gb / q['cp_s']:.2f}", "1.00x"),
                ("`shardkit-convert` (defaults)", f"{gb:.2f}", f"{q['convert_s']:.1f}", f"{gb / q['convert_s']:.2f}",
                 f"{q['convert_s'] / q['cp_s']:.2f}x cp time (peak RSS {q['convert_peak_rss_bytes'] / GB:.2f} GB)"),
                *((name, f"{q['train_bytes'] / GB:.2f}", f"{q['train_bytes'] / GB / v['cold_gb_s']:.1f}",
                   f"{v['cold_gb_s']:.2f}", f"{v['cold_vs_yardstick']:.2f}x {yard}")
                  for name, v in q["rows"].items())])]


READERS = ("shardkit", "shardkit, first epoch (incl. pipeline start)", "unshuffled generator", "PyDataset over h5py",
           "in-memory numpy", "in-memory numpy gather (1 thread)")  # table order


def _readers(readers: dict, sec: dict, img_dir: str) -> Parts:
    readers = dict(sorted(readers.items(), key=lambda kv: READERS.index(kv[0]) if kv[0] in READERS else len(READERS)))
    mem, gen = (readers.get(k, {}).get("examples_per_s") for k in ("in-memory numpy", "unshuffled generator"))
    return [f"Reader throughput on {sec.get('dataset')}, batch {sec.get('batch_size')} (median of "
            f"{sec.get('repeats')} passes):",
            md_table(("Reader", "Shuffles globally", "Examples/s", "MB/s", "vs unshuffled generator", "vs in-memory"),
                     [(name, "yes" if r.get("shuffles") else "no", _num(r.get("examples_per_s")),
                       _num(r.get("mb_per_s"), ".1f"), _x(r["examples_per_s"], gen), _x(r["examples_per_s"], mem))
                      for name, r in readers.items()]),
            _bars(img_dir, "reading.png", "Reader throughput", list(readers),
                  {"": [r["examples_per_s"] for r in readers.values()]}, "examples/s (log scale)")]


def _sweeps(sec: dict, _: dict, img_dir: str) -> Parts:
    """Throughput vs interleave cycle length and vs shard count: a table each, side by side in one plot."""
    sweeps = [(k, t) for k, t in (("cycle_length", "interleave cycle length"), ("shard_count", "shard count"))
              if isinstance(sec.get(k), list) and sec[k]]
    if not sweeps:
        return []
    out, (fig, axes) = [], _plt().subplots(1, len(sweeps), figsize=(5 * len(sweeps), 3.5), squeeze=False)
    for ax, (key, title) in zip(axes[0], sweeps):
        pts = sec[key]
        out += [f"Throughput vs {title}:", md_table((title, "Examples/s", "MB/s"), [
            (p["x"], _num(p["examples_per_s"]), _num(p.get("mb_per_s"), ".1f")) for p in pts])]
        numeric = [p for p in pts if isinstance(p["x"], int)]
        ax.plot([p["x"] for p in numeric], [p["examples_per_s"] for p in numeric], "o-")
        for p in (p for p in pts if not isinstance(p["x"], int)):
            ax.axhline(p["examples_per_s"], color="gray", linestyle="--", label=f"{p['x']} (AUTOTUNE)")
            ax.legend(fontsize=8)
        ax.set_xscale("log", base=2)
        ax.set_xticks([p["x"] for p in numeric], [str(p["x"]) for p in numeric])
        _axes(ax, f"Reader throughput vs {title}", title, "examples/s")
    return out + [_save(fig, img_dir, "reading_sweeps.png")]


def _compression(rows: list, sec: dict, img_dir: str) -> Parts:
    return ["GZIP vs uncompressed shards (same data):", md_table(
        ("Dataset", "Shards", "Bytes on disk", "Examples/s", "MB/s (decoded)"),
        [(r["dataset"], r["compression"], f"{r['bytes']:,}", _num(r["examples_per_s"]), _num(r.get("mb_per_s"), ".1f"))
         for r in rows])]


def _epoch(epoch: dict, sec: dict, img_dir: str) -> Parts:
    rows = [(model, name, _num(r["seconds"], ".1f"), _x(r["seconds"], runs.get("in-memory", {}).get("seconds")),
             _num(r["peak_rss_bytes"] / GB, ".2f"),
             _x(r["peak_rss_bytes"], runs.get("in-memory", {}).get("peak_rss_bytes")),
             _num(r["data_rss_bytes"] / GB if r.get("data_rss_bytes") is not None else None, ".2f"))
            for model, runs in epoch.items() for name, r in sorted(runs.items(), key=lambda kv: kv[0] != "shardkit")]
    return ["Whole-epoch CPU training, fed by shardkit vs in-memory arrays (peak RSS of the process):",
            md_table(("Model / data", "Input", "Epoch s", "vs in-memory", "Peak RSS GB", "vs in-memory", "Data RSS GB"),
                     rows)]


def render_reading(sec: dict, results: dict, img_dir: str) -> Parts:
    """Each part of the reading section that was measured, after the tracebacks of those that failed."""
    failed = [part for part, v in sec.items() if isinstance(v, dict) and "error" in v]
    out = [f"_Part `{part}` failed in this run:_\n\n```\n{sec[part]['error'][-1200:]}\n```" for part in failed]
    sec = {k: v for k, v in sec.items() if k not in failed}
    for part, fn in (("out_of_core", _out_of_core), ("full_scale", _full_scale), ("readers", _readers), (None, _sweeps),
                     ("compression", _compression), ("epoch", _epoch)):
        if value := sec if part is None else sec.get(part):
            out += fn(value, sec, img_dir)
    return out


def render_storage(sec: dict, results: dict, img_dir: str) -> Parts:
    p, enc = sec["protein_projection"], sec["encodings"]
    base = p["one-hot float32"]
    return [
        md_table(("Encoding (shardkit)", "Feature", "Compression", "Examples", "Decoded bytes/example",
                  "Bytes/example on disk"), [(name, r["feature"], r["compression"], f"{r['examples']:,}",
                                              _num(r["payload_bytes_per_example"]), _num(r["bytes_per_example"]))
                                             for name, r in enc.items()]),
        "Naive baselines (bytes per example of the float arrays built in memory):",
        md_table(("Baseline", "Bytes/example"), [(k, f"{v:,}") for k, v in sec["naive"].items()]),
        f"Projected size of a {p['sequences']:,}-sequence protein set (length {p['length']}):",
        md_table(("Representation", "Projected size", "vs float32 one-hot"),
                 [(k, f"{p[k] / GB:.2f} GB", f"1/{base / p[k]:.0f}" if p[k] < base else f"{p[k] / base:.1f}x")
                  for k in ("one-hot float64", "one-hot float32", "shardkit codes", "shardkit codes + GZIP")]),
        _bars(img_dir, "storage.png", "Storage per example", [*enc, *sec["naive"]],
              {"": [*(r["bytes_per_example"] for r in enc.values()), *sec["naive"].values()]},
              "bytes per example (log scale); blue: shardkit records, red: naive arrays",
              ["tab:blue"] * len(enc) + ["tab:red"] * len(sec["naive"])),
    ]


def render_memory(sec: dict, results: dict, img_dir: str) -> Parts:
    points, proj = sec["points"], sec.get("projection") or {}
    modes = list(dict.fromkeys(k for p in points for k in p if k not in ("n", "data_bytes", "step_s")))

    def cells(p: dict, m: str) -> tuple[str, str]:
        step = (p.get("step_s") or {}).get(m)
        return (_num(p[m] / GB, ".2f"), _num(1e3 * step) if step else "-") if p.get(m) else ("not run", "-")

    out = [sec.get("description", ""),
           md_table(("N", "Decoded data GB", *(h for m in modes for h in (f"{m} peak RSS GB", f"{m} ms/step"))),
                    [(f"{p['n']:,}", f"{p['data_bytes'] / GB:.2f}", *(c for m in modes for c in cells(p, m)))
                     for p in points])]
    fig, ax = _plt().subplots(figsize=(6.5, 4))
    for m in modes:
        ax.plot(*zip(*[(p["n"], p[m] / GB) for p in points if p.get(m)]), "o-", label=m)
    _axes(ax, "Training peak RSS vs N", "training examples (N)", "peak RSS, GB", legend=8)
    out.append(_save(fig, img_dir, "memory.png"))
    if proj:
        big, ours = proj["large_n"], [p["shardkit"] for p in points if p.get("shardkit")]
        out += [f"shardkit's peak stays between {min(ours) / GB:.2f} and {max(ours) / GB:.2f} GB from N="
                f"{points[0]['n']:,} to N={points[-1]['n']:,} ({points[-1]['n'] / points[0]['n']:.0f}x the data). "
                f"The in-memory modes are fitted with a straight line RSS = a + b*N and extrapolated to {big:,} "
                "images; last column: the N from which shardkit's largest peak is at most 1/10 of that mode's:",
                md_table(("Mode", "a (GB)", "b (KB/example)", f"Projected at {big:,} (GB)", "N where shardkit <= 1/10"),
                         [(m, f"{e['intercept_bytes'] / GB:.2f}", f"{e['bytes_per_example'] / 1e3:,.1f}",
                           f"{e['at_large_n_bytes'] / GB:.1f}", _num(e.get("n_for_one_tenth")))
                          for m in modes if m != "shardkit" and (e := proj.get(m))])]
    return [part for part in (*out, sec.get("notes", "")) if part]


def render_gpu(sec: dict, results: dict, img_dir: str) -> Parts:
    rows = sec.get("rows", [])
    pct = lambda v: "-" if v is None else f"{v:.0f}%"  # noqa: E731
    table = [(r["model"], r.get("sequence_encoding") or {"knot-cnn": "uint8 image"}.get(r["model"], "onehot"),
              r["batch_size"], r["precision"] + targets.per_call(r), _num(r.get("fit_synthetic_step_ms"), ".2f"),
              _num(r["fit_step_ms"], ".2f"), _x(r.get("fit_reader_over_synthetic"), 1, ".3f"),
              f"{r['synthetic_step_ms']:.2f} / {r['reader_step_ms']:.2f}", f"{r['idle_fraction'] * 100:.1f}%",
              f"{pct(r.get('gpu_util_synthetic'))} / {pct(r.get('gpu_util_reader'))}",
              _num(r["reader_only_examples_per_s"])) for r in rows]
    out = [f"Measured on {sec.get('device', '?')}, Keras backend `{sec.get('backend', '?')}`, "
           f"{sec.get('date_utc', '')}. fit ratio = reader-fed `model.fit` time / `model.fit` on one batch already on "
           "the device, over the same steps after warm-up: the input pipeline's cost as training sees it.",
           md_table(("Model", "Input", "Batch", "Precision", "fit ms/step: synthetic", "fit ms/step: shardkit",
                     "fit ratio", "train_on_batch ms: synthetic / shardkit", "GPU idle (loop)",
                     "GPU util synthetic / shardkit", "Reader-only ex/s"), table)]
    if rows:
        labels = [f"{r['model']} {r.get('sequence_encoding') or ''} b{r['batch_size']} {r['precision']}"
                  f"{targets.per_call(r)}" for r in rows]
        out.append(_bars(img_dir, "gpu.png", "", labels,
                         {"model.fit, batch on device": [r.get("fit_synthetic_step_ms", r["synthetic_step_ms"])
                                                         for r in rows],
                          "model.fit, shardkit reader": [r["fit_step_ms"] for r in rows]}, "ms per training step",
                         log=False))
    then, now = sec.get("reader_defaults"), (results.get("reading") or {}).get("reader_defaults")
    if then and now and then != now:
        out.append("These GPU runs used other reader defaults ({}) than the CPU sections ({}).".format(*(
            f"cycle length {d.get('cycle_length') or 'AUTOTUNE'}, block length {d.get('block_length')}, "
            f"{d.get('read_buffer_bytes', 0) // 1024:,} KB read buffers" for d in (then, now))))
    return out


def render_diagnose(sec: dict, results: dict, img_dir: str) -> Parts:
    name = {m: os.path.basename(r["dataset"].rstrip("/")) for m, r in sec["runs"].items()}
    rows = [(m, name[m], _num(r["reader_examples_per_s"]), _num(r["compute_examples_per_s"]),
             _num(r["fed_examples_per_s"]), f"{r['fed_examples_per_s'] / r['compute_examples_per_s']:.0%}",
             "yes" if r["input_bound"] else "no") for m, r in sec["runs"].items()]
    verdicts = "\n".join(f"    $ shardkit-train bench {name[m]} --model {m} --batch-size {sec['batch_size']}\n"
                         f"    {r['verdict']}" for m, r in sec["runs"].items())
    return [f"On this machine ({sec['steps']} timed steps each, batch {sec['batch_size']}):",
            md_table(("Model", "Dataset", "Reader-only ex/s", "Compute-only ex/s", "Reader-fed ex/s",
                      "Fed / compute", "Input-bound"), rows), verdicts]


def render_rows(sec: dict, results: dict, img_dir: str) -> Parts:
    base = sec["files_per_s"]["hand loop"]
    rows = [(k, _num(v), _x(v, base)) for k, v in sec["files_per_s"].items()]
    return [md_table(("job", "files/s", "vs hand loop"), rows),
            f"{3 * sec['n_per_class']:,} PNGs of {sec['size']}x{sec['size']}x3, median of {sec['repeats']} repeats."]


INTRO = """# shardkit benchmarks

Tables, plots and PASS/MISS are generated by `python -m bench.run_all` from `docs/benchmarks.json`; the
prose between `keep` markers is written by hand and kept on re-render."""

SECTIONS: tuple[tuple[str, str, Callable[[dict, dict, str], Parts]], ...] = (  # heading, results key, renderer
    ("## 1. Conversion: Beam job vs hand-written TFRecordWriter loop", "conversion", render_conversion),
    ("### Converter fast paths vs the library calls they replace", "fast_paths", render_fast_paths),
    ("### Conversion at row scale: millions of small rows, locally and on Dask", "plan_scale", render_plan_scale),
    ("## 2. Reading: shardkit reader vs unshuffled generator vs PyDataset vs in-memory", "reading", render_reading),
    ("### Epoch-to-epoch order: does each epoch see a new order?", "epoch_order", render_epoch_order),
    ("### Peers: the same rows through HF datasets, Grain, WebDataset and Mosaic Streaming", "peers", render_peers),
    ("## 3. Storage: bytes per example", "storage", render_storage),
    ("## 4. Memory: training peak RSS vs N", "memory", render_memory),
    ("## 5. GPU: step time fed by shardkit vs synthetic tensors on the device", "gpu", render_gpu),
    ("## 6. Is my training input-bound? `shardkit-train bench`", "diagnose", render_diagnose),
)
AFTER_KEPT = {"rows": render_rows}  # measured only on request: a table after the hand-written block, when measured


def render_section(sec: dict, results: dict, img_dir: str, fn: Callable[[dict, dict, str], Parts]) -> str:
    """One section's body: its parts, or why there are none; a malformed section does not lose the rest."""
    if "error" in sec:
        return f"_This section failed in this run:_\n\n```\n{sec['error'][-1500:]}\n```"
    try:
        body = "\n\n".join(fn(sec, results, img_dir))
    except Exception as e:
        return f"_Could not render this section: {type(e).__name__}: {e}_"
    if m := sec.get("machine"):  # measured with --only, apart from the machine described above
        body += (f"\n\nMeasured apart from the other sections: {m['cpu']} ({m['usable_cores']} usable cores, "
                 f"load {m['load_average_at_start'][0]}), {sec.get('measured_utc', '')}.")
    return body


def render(results: dict, out_md: str) -> str:
    """Write the markdown (plots beside it under img/), putting back its hand-written blocks; return the text."""
    img_dir = os.path.join(os.path.dirname(os.path.abspath(out_md)), IMG_DIR)
    kept = {m.group(1): m.group(0) for m in KEEP.finditer(Path(out_md).read_text(encoding="utf-8"))} \
        if os.path.exists(out_md) else {}
    parts = [INTRO, "## Machine", render_machine(results), "## Targets", render_targets(results),
             *(["### What the numbers say", kept["interpretation"]] if "interpretation" in kept else [])]
    for title, key, fn in SECTIONS:
        sec = results.get(key)
        body = "_Not measured in this run._" if sec is None else render_section(sec, results, img_dir, fn)
        parts += [title, *([kept[key]] if key in kept else []), body]
    placed = {"interpretation", "reproduce", *(key for _, key, _ in SECTIONS)}
    for key, block in kept.items():  # hand-written sections of their own
        if key not in placed:
            sec = results.get(key)
            after = key in AFTER_KEPT and sec and "error" not in sec
            parts += [block, *(["\n\n".join(AFTER_KEPT[key](sec, results, img_dir))] if after else [])]
    parts += ["## Reproduce", *([kept["reproduce"]] if "reproduce" in kept else [])]
    text = "\n\n".join(parts) + "\n"
    os.makedirs(os.path.dirname(os.path.abspath(out_md)), exist_ok=True)
    Path(out_md).write_text(text, encoding="utf-8")
    return text
