"""The issue's targets, judged PASS/MISS from a results dict (plain values in, plain rows out)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

GB = 1e9


@dataclass(frozen=True)
class Verdict:
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


def _judge(ok: bool) -> str:
    return "PASS" if ok else "MISS"


def readers(results: dict) -> list[Verdict]:
    """shardkit's reader against the unshuffled generator (>= 1.5x) and Keras' in-memory feed (>= 0.8x)."""
    rows = _get(results, "reading", "readers") or {}
    ours, out = _get(rows, "shardkit", "examples_per_s"), []
    for baseline, goal, label in (("unshuffled generator", 1.5, "unshuffled generator (shardkit shuffling globally)"),
                                  ("in-memory numpy", 0.8, "in-memory numpy")):
        base = _get(rows, baseline, "examples_per_s")
        measured = f"{ours / base:.2f}x ({ours:,.0f} vs {base:,.0f} examples/s)" if ours and base else "-"
        out.append(Verdict(f"reader vs {label}", f">= {goal}x", measured,
                           _judge(ours / base >= goal) if ours and base else "not measured"))
    return out


def epoch_time(results: dict) -> list[Verdict]:
    """Per model: epoch time ratio (<= 1.1x) and peak RSS ratio (<= 1/10) against in-memory arrays."""
    out = []
    epoch = _get(results, "reading", "epoch") or {}
    for model, runs in ({} if "error" in epoch else epoch).items():
        ours, mem = runs.get("shardkit"), runs.get("in-memory")
        if not ours or not mem:
            continue
        t = ours["seconds"] / mem["seconds"]
        out.append(Verdict(f"epoch time vs in-memory: {model}", "<= 1.1x",
                           f"{t:.2f}x ({ours['seconds']:.1f} s vs {mem['seconds']:.1f} s)", _judge(t <= 1.1)))
        r = ours["peak_rss_bytes"] / mem["peak_rss_bytes"]
        out.append(Verdict(f"training peak RSS vs in-memory: {model}", "<= 0.10x",
                           f"{ratio(r)} ({ours['peak_rss_bytes'] / GB:.2f} GB vs {mem['peak_rss_bytes'] / GB:.2f} GB)",
                           _judge(r <= 0.1)))
    return out or [Verdict("epoch time vs in-memory", "<= 1.1x at <= 1/10 peak RSS", "-", "not measured")]


def memory_scaling(results: dict) -> list[Verdict]:
    """At the largest N of the memory sweep where both ran: shardkit's peak RSS over each in-memory mode's."""
    points = _get(results, "memory", "points") or []
    out = []
    for mode in sorted({k for p in points for k in p if k.startswith("in-memory")}):
        both = [p for p in points if p.get("shardkit") and p.get(mode)]
        if not both:
            continue
        last = both[-1]
        ours, mem = last["shardkit"], last[mode]
        r = ours / mem
        measured = f"{ratio(r)} ({ours / GB:.2f} GB vs {mem / GB:.2f} GB at N={last['n']:,})"
        cross = _get(results, "memory", "projection", mode, "n_for_one_tenth")
        if cross and r > 0.1:
            measured += f"; <= 1/10 from N~{cross:,.0f} (linear fit)"
        out.append(Verdict(f"training peak RSS, memory sweep: shardkit vs {mode}", "<= 0.10x", measured,
                           _judge(r <= 0.1)))
        steps = last.get("step_s") or {}
        if steps.get("shardkit") and steps.get(mode):
            t = steps["shardkit"] / steps[mode]
            out.append(Verdict(f"training step (epoch) time, memory sweep: shardkit vs {mode}", "<= 1.1x",
                               f"{t:.2f}x ({1e3 * steps['shardkit']:.0f} vs {1e3 * steps[mode]:.0f} ms/step at "
                               f"N={last['n']:,})", _judge(t <= 1.1)))
    return out or [Verdict("training peak RSS vs in-memory (memory sweep)", "<= 0.10x", "-", "not measured")]


def storage(results: dict) -> list[Verdict]:
    r = _get(results, "storage", "codes_over_onehot_float32")
    target, goal = "amino-acid record vs float32 one-hot", "<= 1/50 (0.020)"
    if r is None:
        return [Verdict(target, goal, "-", "not measured")]
    return [Verdict(target, goal, f"1/{1 / r:.0f} ({r:.4f})", _judge(r <= 1 / 50))]


def epoch_order(results: dict) -> list[Verdict]:
    """Each epoch a new order with the converter's default shards: position correlation between consecutive
    epochs <= 0.05, batch-mates meeting again <= 1.5x a fresh permutation's rate, for every dataset size."""
    rows = [r for r in _get(results, "epoch_order", "rows") or [] if r["sharding"] == "default"]
    if not rows:
        return [Verdict("epoch-to-epoch order (default shards)", "correlation <= 0.05, batch-mates <= 1.5x", "-",
                        "not measured")]
    return [Verdict(f"epoch-to-epoch order, {r['dataset']} ({r['train_rows']:,} rows, {r['train_shards']} shards)",
                    "correlation <= 0.05, batch-mates <= 1.5x",
                    f"{r['position_correlation']:.3f}, {r['cooccurrence_vs_fresh']:.2f}x",
                    _judge(r["position_correlation"] <= 0.05 and r["cooccurrence_vs_fresh"] <= 1.5)) for r in rows]


def conversion(results: dict) -> list[Verdict]:
    """At the largest input: the Beam job (whole CLI run, and its write phase) vs the hand loop, 1 worker
    >= 0.7x and 2 workers >= 1.6x; the converter's peak RSS < 1.5 GB (judged for 6 GB in)."""
    sizes = _get(results, "conversion", "sizes") or []
    size = sizes[-1] if sizes else None
    out = []
    for workers, goal in ((1, 0.7), (2, 1.6)):
        target = f"Beam job, {workers} worker{'s' if workers > 1 else ''}, vs hand loop"
        before = len(out)
        for key, what in (("rows_per_s", "wall"), ("write_phase_rows_per_s", "write phase")):
            hand, beam = _get(size, "runs", "hand loop", key), _get(size, "runs", f"beam {workers}w", key)
            if hand and beam:
                measured = f"{beam / hand:.2f}x ({beam:,.0f} vs {hand:,.0f} rows/s, {size['input_bytes'] / GB:.1f} GB in)"
                out.append(Verdict(f"{target} ({what})", f">= {goal}x", measured, _judge(beam / hand >= goal)))
        if len(out) == before:
            out.append(Verdict(target, f">= {goal}x", "-", "not measured"))
    target, goal = "converter peak RSS (all processes)", "< 1.5 GB for 6 GB in"
    peaks = [r["peak_rss_bytes"] for k, r in (_get(size, "runs") or {}).items()
             if k.startswith("beam") and r.get("peak_rss_bytes")]
    if not peaks:
        return [*out, Verdict(target, goal, "-", "not measured")]
    gb_in = size["input_bytes"] / GB
    result = _judge(max(peaks) < 1.5 * GB)
    if gb_in < 5.9 and result == "PASS":
        result = f"PASS at {gb_in:.1f} GB in (6 GB: `--big-gb 6`)"
    return [*out, Verdict(target, goal, f"{max(peaks) / GB:.2f} GB at {gb_in:.1f} GB in", result)]


def gpu(results: dict) -> list[Verdict]:
    out = []
    for row in _get(results, "gpu", "rows") or []:
        r = row.get("fit_reader_over_synthetic")
        if r is None:
            continue
        what = f"{row['model']}{' ' + row['sequence_encoding'] if row.get('sequence_encoding') else ''}"
        n = row.get("steps_per_call")
        per_call = "" if n is None else f", {'auto: ' * (row['steps_per_execution'] == 'auto')}{n} step{'s' * (n > 1)}/call"
        out.append(Verdict(f"GPU model.fit step time, {what} (batch {row['batch_size']}, {row['precision']}{per_call})",
                           "<= 1.05x synthetic",
                           f"{r:.3f}x ({row['fit_step_ms']:.2f} vs {row['fit_synthetic_step_ms']:.2f} ms)",
                           _judge(r <= 1.05)))
    return out or [Verdict("GPU step time vs synthetic input", "<= 1.05x", "-", "not measured (no GPU results)")]


def evaluate(results: dict) -> list[Verdict]:
    """Every target, in the issue's order."""
    return [v for check in (readers, epoch_time, epoch_order, memory_scaling, storage, conversion, gpu)
            for v in check(results)]
