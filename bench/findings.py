"""Plain-language findings under the targets table: what each MISS or PASS rests on, stated from the numbers
of the same run (nothing here is hard-coded to a result)."""

from __future__ import annotations

from typing import Any

GB = 1e9


def _rng(values: list[float], fmt: str) -> str:
    lo, hi = min(values), max(values)
    return format(lo, fmt) if lo == hi else f"{format(lo, fmt)}-{format(hi, fmt)}"


def conversion(results: dict) -> list[str]:
    sec = results.get("conversion") or {}
    sizes = sec.get("sizes") or []
    if not sizes or "error" in sec:
        return []
    out = []
    first, last = sizes[0], sizes[-1]
    beams = ("beam 1w", "beam 2w")
    phase = [s["runs"][b]["write_phase_rows_per_s"] for s in sizes for b in beams
             if s["runs"].get(b, {}).get("write_phase_rows_per_s")]
    startup = [s["runs"][b]["seconds"] - s["runs"][b]["write_phase_seconds"] for s in sizes for b in beams
               if s["runs"].get(b, {}).get("write_phase_seconds")]
    if phase and startup:
        out.append(f"**Conversion.** Every shardkit run pays a fixed {_rng(startup, '.1f')} s outside its write phase "
                   "(Python and Beam start-up, worker processes, planning, metadata, publish), so whole-run rows/s "
                   f"climbs with N ({first['runs']['beam 1w']['rows_per_s']:,.0f} rows/s at {first['rows']:,} rows, "
                   f"{last['runs']['beam 1w']['rows_per_s']:,.0f} at {last['rows']:,} with 1 worker) while the "
                   f"write phase itself stays in {_rng(phase, ',.0f')} rows/s over the sizes measured. The "
                   "targets are judged at the largest input, where start-up is amortised as it is for real data.")
    hand = [s["runs"]["hand loop"]["rows_per_s"] for s in sizes]
    out.append(f"The hand loop ran at {_rng(hand, ',.0f')} rows/s: on small inputs its single output file stays in "
               "the page cache (it also skips shuffle, split and sharding); on the largest input, whose output no "
               f"longer fits in the dirty page cache, it ran at {last['runs']['hand loop']['rows_per_s']:,.0f} rows/s "
               f"({last['input_bytes'] / GB:.1f} GB).")
    rss = [s["runs"][b]["peak_rss_bytes"] / GB for s in sizes for b in ("beam 2w",) if s["runs"].get(b)]
    if rss:
        out.append(f"Converter peak RSS with 2 workers (all processes) stayed within {_rng(rss, '.2f')} GB from "
                   f"{first['input_bytes'] / GB:.2f} GB to {last['input_bytes'] / GB:.1f} GB of input: memory does "
                   "not grow with N.")
    return [" ".join(out)]


def reading(results: dict) -> list[str]:
    sec = results.get("reading") or {}
    readers = sec.get("readers") or {}
    if "error" in readers:
        return []
    ours, gen = readers.get("shardkit"), readers.get("seed-000 generator")
    mem, gather = readers.get("in-memory numpy"), readers.get("in-memory numpy gather (1 thread)")
    if not ours or not gen or "error" in sec:
        return []
    text = (f"**Reading.** With nothing consuming the batches, shardkit's reader delivers "
            f"{ours['examples_per_s']:,.0f} examples/s ({ours['mb_per_s']:,.0f} MB/s) while shuffling globally; "
            f"{ours['examples_per_s'] / gen['examples_per_s']:.2f}x seed 000's generator "
            f"({gen['examples_per_s']:,.0f}/s), which has it easy: the whole file sits in the page cache and it reads "
            "contiguous slices in file order - the class-sorted order that made seed 000's model collapse. It does "
            "not shuffle at all, so it is not a pipeline one can train on as is.")
    pyds = readers.get("PyDataset over h5py")
    if pyds:
        text += (f" Shuffling the same HDF5 correctly (PyDataset over h5py) drops to {pyds['examples_per_s']:,.0f}/s: "
                 f"shardkit is {ours['examples_per_s'] / pyds['examples_per_s']:.0f}x that.")
    if mem:
        text += (f" In-memory arrays read as `model.fit(x, y)` reads them give {mem['examples_per_s']:,.0f}/s"
                 + (f" (a bare numpy gather {gather['examples_per_s']:,.0f}/s, memory bandwidth)" if gather else "")
                 + ".")
    epoch = sec.get("epoch") or {}
    if epoch and "error" not in epoch:
        parts = []
        for model, runs in epoch.items():
            if runs.get("shardkit") and runs.get("in-memory"):
                parts.append(f"{model}: {runs['shardkit']['seconds'] / runs['in-memory']['seconds']:.2f}x the "
                             "in-memory epoch time")
        if parts:
            text += (" What training sees is the epoch time, where reading overlaps the step: " + "; ".join(parts)
                     + ". On this 2-core CPU the reader's threads and the training step share the same two cores.")
    paras = [text]
    sweep = []
    for key, what in (("cycle_length", "interleave cycle length"), ("shard_count", "shard count")):
        pts = sec.get(key)
        if isinstance(pts, list) and len(pts) > 1:
            numeric = [p for p in pts if isinstance(p["x"], int)]
            best = max(numeric, key=lambda p: p["examples_per_s"])
            sweep.append(f"{what} {numeric[0]['x']}: {numeric[0]['examples_per_s']:,.0f} examples/s, best "
                         f"{best['examples_per_s']:,.0f} at {best['x']}, {numeric[-1]['examples_per_s']:,.0f} at "
                         f"{numeric[-1]['x']}" + "".join(f", {p['examples_per_s']:,.0f} with AUTOTUNE" for p in pts
                                                         if p["x"] == "auto"))
    if sweep:
        paras.append("**Reader knobs.** " + "; ".join(sweep) + " (steady-state epochs, as `fit` reads). The "
                     "reader's default reads 8 shards at once, 16 records from each in turn, with 256 KB read "
                     "buffers; AUTOTUNE (`--cycle-length auto`) sets the cycle length to the core count. Slower "
                     "storage (network disks, object stores) rewards more parallel reads.")
    comp = sec.get("compression")
    if isinstance(comp, list) and comp:
        by = {(r["dataset"], r["compression"]): r for r in comp}
        parts = []
        for name in dict.fromkeys(r["dataset"] for r in comp):
            plain, gz = by.get((name, "none")), by.get((name, "GZIP"))
            if plain and gz:
                parts.append(f"{name}: {gz['bytes'] / plain['bytes']:.2f}x the bytes, read at "
                             f"{gz['examples_per_s'] / plain['examples_per_s']:.2f}x the speed")
        if parts:
            paras.append("**GZIP.** " + "; ".join(parts) + ". Compress sequences and other redundant records; "
                         "leave raw images uncompressed unless storage or network is the bottleneck.")
    return paras


def memory(results: dict) -> list[str]:
    sec = results.get("memory") or {}
    points = [p for p in sec.get("points") or [] if p.get("shardkit")]
    if len(points) < 2 or "error" in sec:
        return []
    ours = [p["shardkit"] / GB for p in points]
    text = (f"**Memory.** shardkit's peak stays {_rng(ours, '.2f')} GB from N={points[0]['n']:,} to "
            f"N={points[-1]['n']:,}. The in-memory peaks grow linearly with N")
    proj = sec.get("projection") or {}
    mem = proj.get("in-memory")
    if mem:
        text += (f" ({mem['bytes_per_example'] / 1e3:,.0f} KB per example for uint8 arrays, "
                 f"{mem['bytes_per_example'] / (128 * 128 * 3):.1f}x the image itself, as `fit(x, y)` copies them) "
                 f"from {mem['intercept_bytes'] / GB:.2f} GB with no data, which is TensorFlow + Keras training "
                 "knot-cnn: shardkit's peak sits at that floor, "
                 f"so 1/10 is reachable only from about N={mem.get('n_for_one_tenth', 0):,.0f}; seed 000's "
                 f"{proj['seed000_images']:,} images would need ~{mem['at_seed000_bytes'] / GB:.0f} GB in memory")
    text += "."
    both = [p for p in points if p.get("in-memory")]
    if both:
        last = both[-1]
        steps = last.get("step_s") or {}
        text += (f" Measured at N={last['n']:,} ({last['data_bytes'] / GB:.1f} GB of pixels): shardkit's peak is "
                 f"{last['shardkit'] / last['in-memory']:.3f}x the uint8 in-memory peak")
        if steps.get("shardkit") and steps.get("in-memory"):
            text += f" at {steps['shardkit'] / steps['in-memory']:.2f}x its step time"
        text += "."
    if sec.get("notes"):
        text += " Modes skipped at the largest N are listed under the memory table."
    return [text]


def storage(results: dict) -> list[str]:
    sec = results.get("storage") or {}
    if not sec.get("encodings") or "error" in sec:
        return []
    p = sec["seed001_projection"]
    codes = sec["encodings"]["amino-acid codes"]["bytes_per_example"]
    return [f"**Storage.** An amino-acid record is {codes:,.0f} bytes (660 one-byte codes plus its label, row id and "
            f"length); seed 001's float32 one-hot is {sec['naive']['one-hot float32 (seed 001, to_categorical)']:,} "
            f"bytes and the float64 batches its generator built twice that. For 431,403 sequences: "
            f"{p['one-hot float64'] / GB:.1f} GB (float64) / {p['one-hot float32'] / GB:.1f} GB (float32) vs "
            f"{p['shardkit codes'] / GB:.2f} GB of shards ({p['shardkit codes + GZIP'] / GB:.2f} GB with GZIP); the "
            "one-hot is rebuilt on the fly in the graph (`tf.one_hot`)."]


def gpu(results: dict) -> list[str]:
    rows = [r for r in (results.get("gpu") or {}).get("rows", []) if r.get("fit_reader_over_synthetic")]
    if not rows:
        return []

    def ratios(model: str, **match: Any) -> list[float]:
        return [r["fit_reader_over_synthetic"] for r in rows
                if r["model"] == model and all(r.get(k) == v for k, v in match.items())]

    def busy(model: str, **match: Any) -> list[float]:
        return [r["fit_synthetic_step_ms"] for r in rows
                if r["model"] == model and all(r.get(k) == v for k, v in match.items())]

    knot_big, knot_small = ratios("knot-cnn", batch_size=256), ratios("knot-cnn", batch_size=64)
    protein = ratios("protein-cnn", precision="float32")
    reader = [r["reader_only_examples_per_s"] for r in rows if r["model"] == "protein-cnn"]
    slow_codes = busy("protein-cnn", precision="mixed_float16", sequence_encoding="codes")
    then, now = (results.get("gpu") or {}).get("reader_defaults"), (results.get("reading") or {}).get("reader_defaults")
    stale = (f" These GPU runs used other reader defaults ({_settings(then)}) than the CPU sections ({_settings(now)}); "
             "re-measure them with `bench.gpu_bench` on a GPU machine." if then and now and then != now else "")
    return [f"**GPU.** Fed by shardkit, knot-cnn's `model.fit` step is {_rng(knot_big, '.2f')}x the step on a batch "
            f"already on the device at batch 256 and {_rng(knot_small, '.2f')}x at batch 64, where the whole step "
            f"is {_rng(busy('knot-cnn'), '.1f')} ms. protein-cnn's float32 step on the device is only "
            f"{_rng(busy('protein-cnn', precision='float32'), '.1f')} ms, and fed by the reader it takes "
            f"{_rng(protein, '.1f')}x that, "
            f"whether the reader hands over float32 one-hot or uint8 codes, although the reader alone delivers "
            f"{_rng(reader, ',.0f')} examples/s (under 1 ms per batch of 256) and shrinking the batch 20x (codes) "
            "changes nothing: the gap appears to be the fixed per-step hand-over from tf.data to Keras' JAX trainer "
            "(about 2-3 ms), not reading. The GPU machine has no TensorFlow GPU build and no network, so tf.data "
            "ran from a carried tensorflow-cpu wheel and Keras on JAX; with TensorFlow GPU the batches would be "
            "prefetched to the device inside the graph, which could not be measured here." + (f" (protein-cnn with an Embedding of the codes under mixed_float16 is slow in itself, "
                       f"{_rng(slow_codes, '.0f')} ms a step on the device: keep that model in float32.)"
                       if slow_codes else "") + stale]


def _settings(defaults: dict[str, Any]) -> str:
    cycle = defaults.get("cycle_length") or "AUTOTUNE"
    return (f"cycle length {cycle}, block length {defaults.get('block_length')}, "
            f"{defaults.get('read_buffer_bytes', 0) // 1024:,} KB read buffers")


def render(results: dict[str, Any]) -> str:
    """The findings as markdown paragraphs (empty when nothing was measured)."""
    paras = [*conversion(results), *reading(results), *storage(results), *memory(results), *gpu(results)]
    return "\n\n".join(paras)
