"""The issue's targets, judged PASS/MISS from a results dict: each check gives (target, goal, measured, passed)
rows, ``passed`` a bool or the result in words; ``evaluate`` turns them into the report's verdicts."""

from __future__ import annotations

from typing import Any, Callable, NamedTuple

GB = 1e9
Row = tuple[str, str, str, Any]


class Verdict(NamedTuple):
    target: str
    goal: str
    measured: str
    result: str  # PASS, MISS or "not measured"


def _get(d: Any, *keys: Any) -> Any:
    for k in keys:
        try:
            d = d[k]
        except (KeyError, IndexError, TypeError):
            return None
    return d


def ratio(r: float) -> str:
    """A ratio as the tables print it (three decimals when small, so 0.097 does not read as 0.10)."""
    return f"{r:.3f}x" if r < 0.2 else f"{r:.2f}x"


def unmeasured(target: str, goal: str, why: str = "not measured") -> list[Row]:
    return [(target, goal, "-", why)]


def versus(ours: float, base: float, ok: Callable[[float], bool], unit: str, tail: str = "",
           fmt: Callable[[float], str] = "{:.2f}x".format) -> tuple[str, bool]:
    """'ratio (ours vs base{tail})', each value formatted by ``unit``, and whether ``ok`` accepts the ratio."""
    r = ours / base
    return f"{fmt(r)} ({unit.format(ours)} vs {unit.format(base)}{tail})", ok(r)


def out_of_core(results: dict) -> list[Row]:
    """The reader cold against parallel sequential reads of its shards (>= 0.8x); warm, read-ahead on vs off (+-5%)."""
    o = _get(results, "reading", "out_of_core") or {}
    rows, default = o.get("rows") or {}, o.get("default_readahead_mb")
    off, on = rows.get("reader, read-ahead 0 MB"), rows.get(f"reader, read-ahead {default:g} MB" if default else "")
    if not off or not on:
        return unmeasured("reader out of core vs parallel sequential reads", ">= 0.8x")
    cold, warm = on["cold_vs_yardstick"], on["warm_gb_s"] / off["warm_gb_s"]
    return [("reader out of core (cold) vs parallel sequential reads", ">= 0.8x",
             f"{cold:.2f}x (read-ahead off: {off['cold_vs_yardstick']:.2f}x)", cold >= 0.8),
            ("reader warm, read-ahead on vs off", "1.00x +- 0.05", f"{warm:.2f}x", abs(warm - 1) <= 0.05)]


def readers(results: dict) -> list[Row]:
    """shardkit's reader against the unshuffled generator (>= 1.5x) and Keras' in-memory feed (>= 0.8x)."""
    rows, out = _get(results, "reading", "readers") or {}, []
    ours = _get(rows, "shardkit", "examples_per_s")
    for baseline, goal, label in (("unshuffled generator", 1.5, "unshuffled generator (shardkit shuffling globally)"),
                                  ("in-memory numpy", 0.8, "in-memory numpy")):
        base, target = _get(rows, baseline, "examples_per_s"), f"reader vs {label}"
        out += [(target, f">= {goal}x", *versus(ours, base, lambda r: r >= goal, "{:,.0f}", " examples/s"))] \
            if ours and base else unmeasured(target, f">= {goal}x")
    return out


def epoch_time(results: dict) -> list[Row]:
    """Per model: epoch time ratio (<= 1.1x) and peak RSS ratio (<= 1/10) against in-memory arrays."""
    epoch, out = _get(results, "reading", "epoch") or {}, []
    for model, runs in ({} if "error" in epoch else epoch).items():
        if (ours := runs.get("shardkit")) and (mem := runs.get("in-memory")):
            out += [(f"epoch time vs in-memory: {model}", "<= 1.1x",
                     *versus(ours["seconds"], mem["seconds"], lambda t: t <= 1.1, "{:.1f} s")),
                    (f"training peak RSS vs in-memory: {model}", "<= 0.10x",
                     *versus(ours["peak_rss_bytes"] / GB, mem["peak_rss_bytes"] / GB, lambda r: r <= 0.1, "{:.2f} GB",
                             fmt=ratio))]
    return out or unmeasured("epoch time vs in-memory", "<= 1.1x at <= 1/10 peak RSS")


def epoch_order(results: dict) -> list[Row]:
    """Each epoch a new order with the converter's default shards: position correlation between consecutive
    epochs <= 0.05, batch-mates meeting again <= 1.5x a fresh permutation's rate, for every dataset size."""
    goal = "correlation <= 0.05, batch-mates <= 1.5x"
    rows = [r for r in _get(results, "epoch_order", "rows") or [] if r["sharding"] == "default"]
    return [(f"epoch-to-epoch order, {r['dataset']} ({r['train_rows']:,} rows, {r['train_shards']} shards)", goal,
             f"{r['position_correlation']:.3f}, {r['cooccurrence_vs_fresh']:.2f}x",
             r["position_correlation"] <= 0.05 and r["cooccurrence_vs_fresh"] <= 1.5)
            for r in rows] or unmeasured("epoch-to-epoch order (default shards)", goal)


def peers(results: dict) -> list[Row]:
    """shardkit's reader warm against the fastest peer of the same run (>= 1.0x)."""
    rows = _get(results, "peers", "rows") or []
    ours = next((r for r in rows if r["reader"] == "shardkit"), None)
    others = [r for r in rows if r["reader"] != "shardkit" and r.get("warm_examples_per_s")]
    if not ours or not others:
        return unmeasured("reader warm vs the fastest peer", ">= 1.0x")
    best = max(others, key=lambda r: r["warm_examples_per_s"])
    measured, passed = versus(ours["warm_examples_per_s"], best["warm_examples_per_s"], lambda r: r >= 1.0,
                              "{:,.0f} ex/s", f", {best['system']}")
    return [("reader warm vs the fastest peer", ">= 1.0x", measured, passed)]


def memory_scaling(results: dict) -> list[Row]:
    """At the largest N of the memory sweep where both ran: shardkit's peak RSS (and step time) over each
    in-memory mode's."""
    points, out = _get(results, "memory", "points") or [], []
    for mode in sorted({k for p in points for k in p if k.startswith("in-memory")}):
        if not (both := [p for p in points if p.get("shardkit") and p.get(mode)]):
            continue
        last = both[-1]
        ours, mem, at = last["shardkit"], last[mode], f" at N={last['n']:,}"
        measured, ok = versus(ours / GB, mem / GB, lambda r: r <= 0.1, "{:.2f} GB", at, fmt=ratio)
        if (cross := _get(results, "memory", "projection", mode, "n_for_one_tenth")) and ours / mem > 0.1:
            measured += f"; <= 1/10 from N~{cross:,.0f} (linear fit)"
        out.append((f"training peak RSS, memory sweep: shardkit vs {mode}", "<= 0.10x", measured, ok))
        if (steps := last.get("step_s") or {}).get("shardkit") and steps.get(mode):
            out.append((f"training step (epoch) time, memory sweep: shardkit vs {mode}", "<= 1.1x",
                        *versus(1e3 * steps["shardkit"], 1e3 * steps[mode], lambda t: t <= 1.1, "{:.0f}",
                                " ms/step" + at)))
    return out or unmeasured("training peak RSS vs in-memory (memory sweep)", "<= 0.10x")


def storage(results: dict) -> list[Row]:
    r = _get(results, "storage", "codes_over_onehot_float32")
    target, goal = "amino-acid record vs float32 one-hot", "<= 1/50 (0.020)"
    return unmeasured(target, goal) if r is None else [(target, goal, f"1/{1 / r:.0f} ({r:.4f})", r <= 1 / 50)]


def conversion(results: dict) -> list[Row]:
    """At the largest input: the Beam job (whole CLI run, and its write phase) vs the hand loop, 1 worker
    >= 0.7x and 2 workers >= 1.6x; the converter's peak RSS < 1.5 GB (judged for 6 GB in)."""
    size, out = (_get(results, "conversion", "sizes") or [None])[-1], []
    gb_in = (size or {}).get("input_bytes", 0) / GB
    for workers, goal in ((1, 0.7), (2, 1.6)):
        target = f"Beam job, {workers} worker{'s' if workers > 1 else ''}, vs hand loop"
        found = [(f"{target} ({what})", f">= {goal}x",
                  *versus(beam, hand, lambda r: r >= goal, "{:,.0f}", f" rows/s, {gb_in:.1f} GB in"))
                 for key, what in (("rows_per_s", "wall"), ("write_phase_rows_per_s", "write phase"))
                 if (hand := _get(size, "runs", "hand loop", key))
                 and (beam := _get(size, "runs", f"beam {workers}w", key))]
        out += found or unmeasured(target, f">= {goal}x")
    target, goal = "converter peak RSS (all processes)", "< 1.5 GB for 6 GB in"
    peaks = [r["peak_rss_bytes"] for k, r in (_get(size, "runs") or {}).items()
             if k.startswith("beam") and r.get("peak_rss_bytes")]
    if not peaks:
        return out + unmeasured(target, goal)
    passed = max(peaks) < 1.5 * GB
    if passed and gb_in < 5.9:
        passed = f"PASS at {gb_in:.1f} GB in (6 GB: `--big-gb 6`)"
    return [*out, (target, goal, f"{max(peaks) / GB:.2f} GB at {gb_in:.1f} GB in", passed)]


def per_call(row: dict) -> str:
    """', 3 steps/call' (', auto: 3 steps/call') for rows measured at several steps per execution."""
    n = row.get("steps_per_call")
    return "" if n is None else f", {'auto: ' * (row.get('steps_per_execution') == 'auto')}{n} step{'s' * (n > 1)}/call"


def gpu(results: dict) -> list[Row]:
    rows = [row for row in _get(results, "gpu", "rows") or [] if row.get("fit_reader_over_synthetic") is not None]
    return [(f"GPU model.fit step time, {row['model']}"
             f"{' ' + row['sequence_encoding'] if row.get('sequence_encoding') else ''} (batch {row['batch_size']}, "
             f"{row['precision']}{per_call(row)})", "<= 1.05x synthetic",
             f"{row['fit_reader_over_synthetic']:.3f}x ({row['fit_step_ms']:.2f} vs "
             f"{row['fit_synthetic_step_ms']:.2f} ms)", row["fit_reader_over_synthetic"] <= 1.05)
            for row in rows] or unmeasured("GPU step time vs synthetic input", "<= 1.05x",
                                           "not measured (no GPU results)")


def evaluate(results: dict) -> list[Verdict]:
    """Every target, in the issue's order."""
    checks = (out_of_core, readers, epoch_time, epoch_order, peers, memory_scaling, storage, conversion, gpu)
    return [Verdict(target, goal, measured, ("PASS" if passed else "MISS") if isinstance(passed, bool) else passed)
            for check in checks for target, goal, measured, passed in check(results)]
