"""The issue's targets, judged PASS/MISS from a results dict (plain values in, plain rows out)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable

GB = 1e9


@dataclass(frozen=True)
class Verdict:
    target: str
    goal: str
    measured: str
    result: str  # PASS, MISS or "not measured"


def _get(d: Any, *keys: Any) -> Any:
    for k in keys:
        if not isinstance(d, (dict, list)):
            return None
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


def _reader_vs(results: dict, baseline: str, goal: float, label: str) -> Verdict:
    readers = _get(results, "reading", "readers") or {}
    readers = {} if "error" in readers else readers
    ours = _get(readers, "shardkit", "examples_per_s")
    base = _get(readers, baseline, "examples_per_s")
    target = f"reader vs {label}"
    if not ours or not base:
        return Verdict(target, f">= {goal}x", "-", "not measured")
    ratio = ours / base
    return Verdict(target, f">= {goal}x", f"{ratio:.2f}x ({ours:,.0f} vs {base:,.0f} examples/s)",
                   _judge(ratio >= goal))


def reader_vs_generator(results: dict) -> Verdict:
    return _reader_vs(results, "seed-000 generator", 1.5, "seed-000 generator (shardkit shuffling globally)")


def reader_vs_memory(results: dict) -> Verdict:
    return _reader_vs(results, "in-memory numpy", 0.8, "in-memory numpy")


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
    modes = sorted({k for p in points for k in p if k.startswith("in-memory")})
    for mode in modes:
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


def storage(results: dict) -> Verdict:
    ratio = _get(results, "storage", "codes_over_onehot_float32")
    target = "amino-acid record vs float32 one-hot"
    if ratio is None:
        return Verdict(target, "<= 1/50 (0.020)", "-", "not measured")
    return Verdict(target, "<= 1/50 (0.020)", f"1/{1 / ratio:.0f} ({ratio:.4f})", _judge(ratio <= 1 / 50))


def _largest_conversion(results: dict) -> dict | None:
    sizes = _get(results, "conversion", "sizes") or []
    return sizes[-1] if sizes else None


def beam_vs_hand(results: dict, workers: int, goal: float) -> list[Verdict]:
    """At the largest input: whole CLI wall time, and the write phase alone (no start-up), vs the hand loop."""
    size = _largest_conversion(results)
    target = f"Beam job, {workers} worker{'s' if workers > 1 else ''}, vs hand loop"
    out = []
    for key, what in (("rows_per_s", "wall"), ("write_phase_rows_per_s", "write phase")):
        hand = _get(size, "runs", "hand loop", key)
        beam = _get(size, "runs", f"beam {workers}w", key)
        if hand and beam:
            r = beam / hand
            out.append(Verdict(f"{target} ({what})", f">= {goal}x", f"{r:.2f}x ({beam:,.0f} vs {hand:,.0f} rows/s, "
                               f"{size['input_bytes'] / GB:.1f} GB in)", _judge(r >= goal)))
    return out or [Verdict(target, f">= {goal}x", "-", "not measured")]


def converter_rss(results: dict) -> Verdict:
    size = _largest_conversion(results)
    target = "converter peak RSS (all processes)"
    runs = _get(size, "runs") or {}
    peaks = [r["peak_rss_bytes"] for k, r in runs.items() if k.startswith("beam") and r.get("peak_rss_bytes")]
    if not peaks:
        return Verdict(target, "< 1.5 GB for 6 GB in", "-", "not measured")
    peak = max(peaks)
    gb_in = size["input_bytes"] / GB
    result = _judge(peak < 1.5 * GB)
    if gb_in < 5.9 and result == "PASS":
        result = f"PASS at {gb_in:.1f} GB in (6 GB: `--big-gb 6`)"
    return Verdict(target, "< 1.5 GB for 6 GB in", f"{peak / GB:.2f} GB at {gb_in:.1f} GB in", result)


def gpu(results: dict) -> list[Verdict]:
    rows = _get(results, "gpu", "rows") or []
    out = []
    for row in rows:
        ratio = row.get("fit_reader_over_synthetic")
        if ratio is None:
            continue
        what = f"{row['model']}{' ' + row['sequence_encoding'] if row.get('sequence_encoding') else ''}"
        out.append(Verdict(f"GPU model.fit step time, {what} (batch {row['batch_size']}, {row['precision']})",
                           "<= 1.05x synthetic",
                           f"{ratio:.3f}x ({row['fit_step_ms']:.2f} vs {row['fit_synthetic_step_ms']:.2f} ms)",
                           _judge(ratio <= 1.05)))
    return out or [Verdict("GPU step time vs synthetic input", "<= 1.05x", "-", "not measured (no GPU results)")]


CHECKS: tuple[Callable[[dict], Verdict | list[Verdict]], ...] = (
    reader_vs_generator, reader_vs_memory, epoch_time, memory_scaling, storage,
    lambda r: beam_vs_hand(r, 1, 0.7), lambda r: beam_vs_hand(r, 2, 1.6), converter_rss, gpu,
)


def evaluate(results: dict) -> list[Verdict]:
    """Every target, in the issue's order."""
    out: list[Verdict] = []
    for check in CHECKS:
        v = check(results)
        out.extend(v if isinstance(v, list) else [v])
    return out
