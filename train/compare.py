"""``shardkit-train compare RUN_A RUN_B``: is the accuracy difference between two ``fit --repeat N`` runs real,
or seed noise, or test-set sampling?

Pairs the runs by seed (paired t-test; Welch's t-test when the seed sets differ), then example by example
(McNemar's exact test on the pooled test predictions, matched by seed and row id), and prints a one-line
verdict with the seeds or test examples that would resolve the difference. Writes compare.json and
compare.png into ``--out``. The arithmetic is in docs/train.md ("Comparing two configurations").
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
from dataclasses import dataclass
from typing import Any

import numpy as np

from shardkit import spec
from shardkit.spec import DatasetError
from shardkit.train import repeat, report, stats

OUTPUTS = ("compare.json", "compare.png")


@dataclass(frozen=True)
class Run:
    """A ``fit --repeat N`` run directory: its summary and each seed's test predictions sorted by row id."""

    path: str
    seeds: tuple[int, ...]
    dataset: str
    dataset_id: str
    settings: dict[str, Any]
    predictions: dict[int, dict[str, np.ndarray]]

    def correct(self, seed: int) -> np.ndarray:
        p = self.predictions[seed]
        return (p["predicted"] == p["label"]).astype(np.float64)

    def accuracy(self, seed: int) -> float:
        return float(self.correct(seed).mean())

    @property
    def row_ids(self) -> np.ndarray:
        return self.predictions[self.seeds[0]]["row_id"]


def load_run(path: str) -> Run:
    """Read RUN_DIR/summary.json and every seed's predictions_test.npz; ``DatasetError`` (one line) if it is
    not a repeated run made by this version."""
    summary_path = os.path.join(path, repeat.SUMMARY_FILE)
    if not os.path.isdir(path):
        raise DatasetError(f"{path}: no such run directory")
    if not os.path.exists(summary_path):
        if os.path.exists(os.path.join(path, "metrics.json")):
            raise DatasetError(f"{path}: a single run, not repeated; compare needs runs made with fit --repeat N (N >= 2)")
        raise DatasetError(f"{path}: no {repeat.SUMMARY_FILE}; not a fit --repeat N run directory")
    with open(summary_path, encoding="utf-8") as f:
        summary = json.load(f)
    seeds = tuple(int(s) for s in summary.get("seeds", []))
    if len(seeds) < 2:
        raise DatasetError(f"{summary_path}: {len(seeds)} seed(s); compare needs runs made with fit --repeat N (N >= 2)")
    if not summary.get("dataset_id"):
        raise DatasetError(f"{summary_path}: no dataset_id (made by an older shardkit-train); re-run fit --repeat {len(seeds)}")
    predictions = {}
    for seed in seeds:
        file = os.path.join(repeat.seed_dir(path, seed), repeat.PREDICTIONS_FILE)
        if not os.path.exists(file):
            raise DatasetError(f"{file}: missing; compare needs each seed's test predictions (re-run fit --repeat {len(seeds)})")
        p = report.read_predictions(file)
        order = np.argsort(p["row_id"], kind="stable")
        predictions[seed] = {k: v[order] for k, v in p.items()}
    return Run(path, seeds, summary.get("dataset", ""), summary["dataset_id"], summary.get("settings", {}), predictions)


def check_comparable(a: Run, b: Run) -> None:
    """Refuse (``DatasetError``, one line) runs of different datasets or tested on different examples."""
    if os.path.realpath(a.path) == os.path.realpath(b.path):
        raise DatasetError(f"{a.path}: RUN_A and RUN_B are the same run; compare two runs")
    if a.dataset_id != b.dataset_id:
        raise DatasetError(
            f"{a.path} was trained on dataset {a.dataset_id} ({a.dataset}), {b.path} on {b.dataset_id} ({b.dataset}): "
            "compare runs of the same dataset"
        )
    for run in (a, b):
        for seed in run.seeds:
            p = run.predictions[seed]
            if not np.array_equal(p["row_id"], run.row_ids):
                raise DatasetError(f"{repeat.seed_dir(run.path, seed)}: tested on other examples than its run's first seed; re-run fit --repeat")
    ref_a, ref_b = a.predictions[a.seeds[0]], b.predictions[b.seeds[0]]
    if not np.array_equal(ref_a["row_id"], ref_b["row_id"]) or not np.array_equal(ref_a["label"], ref_b["label"]):
        common = len(np.intersect1d(ref_a["row_id"], ref_b["row_id"]))
        raise DatasetError(
            f"{a.path} and {b.path} were tested on different test splits ({len(ref_a['row_id'])} and "
            f"{len(ref_b['row_id'])} examples, {common} in common): compare runs tested on the same split"
        )


def compare_runs(a: Run, b: Run) -> dict[str, Any]:
    """Every number of the comparison as plain values: per-seed accuracies, the seed-level t-test, McNemar on
    the pooled predictions, binomial test-set errors, the seeds / test examples that would resolve the
    difference, and the verdict."""
    check_comparable(a, b)
    acc_a = {s: a.accuracy(s) for s in a.seeds}
    acc_b = {s: b.accuracy(s) for s in b.seeds}
    paired = set(a.seeds) == set(b.seeds)
    examples = len(a.row_ids)
    if paired:
        seeds = sorted(a.seeds)
        t = stats.paired_t([acc_a[s] for s in seeds], [acc_b[s] for s in seeds])
        pairs = [(s, s) for s in seeds]
        shared, per_example = stats.spread_split(np.stack([a.correct(s) - b.correct(s) for s in seeds]))
        n_seeds = len(seeds)
    else:
        t = stats.welch_t([acc_a[s] for s in a.seeds], [acc_b[s] for s in b.seeds])
        pairs = list(zip(sorted(a.seeds), sorted(b.seeds)))
        shared_a, per_a = stats.spread_split(np.stack([a.correct(s) for s in a.seeds]))
        shared_b, per_b = stats.spread_split(np.stack([b.correct(s) for s in b.seeds]))
        shared, per_example = shared_a + shared_b, per_a + per_b
        n_seeds = min(len(a.seeds), len(b.seeds))
    only_a = only_b = 0
    per_pair = []
    for sa, sb in pairs:
        ca, cb = a.correct(sa).astype(bool), b.correct(sb).astype(bool)
        pb, pc = int(np.sum(ca & ~cb)), int(np.sum(~ca & cb))
        per_pair.append({"seed_a": sa, "seed_b": sb, "a_only_right": pb, "b_only_right": pc, "p": stats.mcnemar_exact(pb, pc)})
        only_a, only_b = only_a + pb, only_b + pc
    diff = float(t["diff"])
    mean_a, mean_b = float(np.mean(list(acc_a.values()))), float(np.mean(list(acc_b.values())))
    discordant = (only_a + only_b) / (len(pairs) * examples)
    result: dict[str, Any] = {
        "run_a": {"dir": os.path.abspath(a.path), "seeds": list(a.seeds), "settings": a.settings,
                  "accuracy": {str(s): v for s, v in acc_a.items()}, "mean": mean_a},
        "run_b": {"dir": os.path.abspath(b.path), "seeds": list(b.seeds), "settings": b.settings,
                  "accuracy": {str(s): v for s, v in acc_b.items()}, "mean": mean_b},
        "dataset_id": a.dataset_id,
        "dataset": a.dataset,
        "settings_differ": {k: [a.settings.get(k), b.settings.get(k)]
                            for k in sorted(set(a.settings) | set(b.settings)) if a.settings.get(k) != b.settings.get(k)},
        "test_examples": examples,
        "seed_test": t,
        "mcnemar": {"pairs": per_pair, "a_only_right": only_a, "b_only_right": only_b,
                    "pooled_examples": len(pairs) * examples, "p": stats.mcnemar_exact(only_a, only_b)},
        "test_set_error": {
            "se_a": stats.binomial_se(mean_a, examples),
            "se_b": stats.binomial_se(mean_b, examples),
            "se_diff": math.sqrt(max(discordant - diff * diff, 0.0) / examples),
            "diff_examples": diff * examples,
        },
        "spread": {"shared_var": shared, "per_example_var": per_example, "sd": math.sqrt(shared + per_example)},
        "needed": {
            "seeds": stats.seeds_needed(diff, math.sqrt(shared + per_example)),
            "test_examples": stats.test_size_needed(diff, n_seeds, shared, per_example, examples),
        },
    }
    result["distinguishable"] = bool(t["p"] < 0.05 and result["mcnemar"]["p"] < 0.05)
    result["verdict"] = verdict(result)
    return result


def _pct(x: float, signed: bool = False, digits: int = 1) -> str:
    return f"{100 * x:+.{digits}f}%" if signed else f"{100 * x:.{digits}f}%"


def _about(n: int) -> str:
    """n to two significant figures, with thousands separators."""
    if n >= 100:
        n = int(round(n, 1 - len(str(n))))
    return f"{n:,}"


def verdict(result: dict[str, Any]) -> str:
    """One line: A - B with its 95% CI over seeds, and whether it is distinguishable from seed noise and from
    test-set sampling; if not, the seeds or test examples that would resolve a difference this size."""
    t, mcnemar, needed = result["seed_test"], result["mcnemar"], result["needed"]
    diff = t["diff"]
    digits = 1 if abs(diff) >= 0.001 or diff == 0 else 2
    seeds = f"{t['n_a']} seeds" if t["test"] == "paired" else f"{t['n_a']} and {t['n_b']} seeds, unpaired"
    head = f"A - B = {_pct(diff, True, digits)} ± {_pct(t['ci95'], False, digits)} (95% CI, {seeds})"
    if t["p"] < 0.05 and mcnemar["p"] < 0.05:
        return (f"{head}: distinguishable from seed noise (p = {t['p']:.2g}) and from test-set sampling "
                f"(McNemar p = {mcnemar['p']:.2g})")
    if t["p"] < 0.05:
        return (f"{head}: distinguishable from seed noise (p = {t['p']:.2g}) but not from test-set sampling "
                f"(McNemar p = {mcnemar['p']:.2g}); more test examples would tell whether it holds on new data")
    if diff == 0.0:
        return f"{head}: no difference in mean accuracy"
    size = _pct(abs(diff), False, digits)
    if needed["seeds"] is None:
        more_seeds = "more than 100,000 seeds"
    else:
        more_seeds = f"about {_about(needed['seeds'])} seeds"
    if needed["test_examples"] is None:
        return (f"{head}: not distinguishable from seed noise; {more_seeds} would resolve {size} at this spread "
                "(a larger test set alone would not: the spread is shared across examples)")
    return (f"{head}: not distinguishable from seed noise; {more_seeds}, or a test set of about "
            f"{_about(needed['test_examples'])} examples, would resolve {size} at this spread")


def describe(result: dict[str, Any], name_a: str, name_b: str) -> list[str]:
    """The comparison as report lines (per-seed table, the tests, the test-set error), the verdict last."""
    a, b, t, m, err = result["run_a"], result["run_b"], result["seed_test"], result["mcnemar"], result["test_set_error"]
    n = result["test_examples"]
    differ = ", ".join(f"{k} {va!r} vs {vb!r}" for k, (va, vb) in result["settings_differ"].items()) or "none"
    lines = [
        f"A = {name_a}, B = {name_b}: dataset {result['dataset_id']}, {n} test examples; settings that differ: {differ}",
    ]
    if t["test"] == "paired":
        lines.append("seed   A acc    B acc    A - B")
        for s in a["seeds"]:
            va, vb = a["accuracy"][str(s)], b["accuracy"][str(s)]
            lines.append(f"{s:<6} {va:.4f}   {vb:.4f}   {va - vb:+.4f}")
        lines.append(f"paired t-test over {t['n_a']} seeds: A - B = {t['diff']:+.4f} ± {t['ci95']:.4f} (95% CI, t with "
                     f"{t['df']:.0f} df), p = {t['p']:.3g}")
    else:
        lines.append(f"seed sets differ (A: {_seeds(a['seeds'])}; B: {_seeds(b['seeds'])}): Welch's unpaired t-test, and the "
                     "per-example test pairs A's and B's seeds in order")
        lines.append("A per seed: " + " ".join(f"{v:.4f}" for v in a["accuracy"].values()))
        lines.append("B per seed: " + " ".join(f"{v:.4f}" for v in b["accuracy"].values()))
        lines.append(f"Welch's t-test: A - B = {t['diff']:+.4f} ± {t['ci95']:.4f} (95% CI, t with {t['df']:.1f} df), "
                     f"p = {t['p']:.3g}")
    lines.append(
        f"per example (McNemar exact, {len(m['pairs'])} seed pairs x {n} examples pooled): only A right "
        f"{m['a_only_right']}, only B right {m['b_only_right']}, p = {m['p']:.3g}"
    )
    lines.append(
        f"test-set sampling: A's accuracy {_pct(a['mean'])} ± {_pct(1.96 * err['se_a'])}, B's {_pct(b['mean'])} ± "
        f"{_pct(1.96 * err['se_b'])} (95%, binomial, {n} examples); A - B is {err['diff_examples']:+.1f} of {n} "
        f"examples per seed, ± {1.96 * err['se_diff'] * n:.1f} from which examples are in the test set"
    )
    lines.append(result["verdict"])
    return lines


def _seeds(seeds: list[int]) -> str:
    return ",".join(str(s) for s in seeds)


def plot_paired(result: dict[str, Any], path: str, name_a: str = "A", name_b: str = "B") -> str:
    """Left: each seed's accuracy under A and B (joined when paired by seed), means with 95% CIs. Right: the
    difference A - B per seed, with its mean and 95% CI against zero."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    a, b, t = result["run_a"], result["run_b"], result["seed_test"]
    acc_a, acc_b = a["accuracy"], b["accuracy"]
    fig, (left, right) = plt.subplots(1, 2, figsize=(9, 4), gridspec_kw={"width_ratios": [3, 2]})
    if t["test"] == "paired":
        for s in a["seeds"]:
            left.plot([0, 1], [acc_a[str(s)], acc_b[str(s)]], color="0.6", marker="o", lw=1)
        diffs = [acc_a[str(s)] - acc_b[str(s)] for s in a["seeds"]]
    else:
        left.plot(np.zeros(len(acc_a)), list(acc_a.values()), "o", color="0.6")
        left.plot(np.ones(len(acc_b)), list(acc_b.values()), "o", color="0.6")
        diffs = []
    for x, values in ((0, list(acc_a.values())), (1, list(acc_b.values()))):
        mean, half = stats.mean_ci95(values)
        left.errorbar([x + 0.08], [mean], yerr=[half], fmt="s", color="C0", capsize=5)
    left.set_xticks([0, 1], [f"A: {name_a}", f"B: {name_b}"])
    left.set_xlim(-0.4, 1.4)
    left.set_ylabel("test accuracy")
    left.set_title("per seed (mean ± 95% CI)")
    if diffs:
        right.plot(np.linspace(-0.1, 0.1, len(diffs)), diffs, "o", color="0.6")  # spread so equal values show
    right.errorbar([0.15], [t["diff"]], yerr=[t["ci95"]], fmt="s", color="C3", capsize=6)
    right.axhline(0.0, color="k", lw=0.8)
    right.set_xticks([])
    right.set_xlim(-0.5, 0.6)
    right.set_ylabel("A - B accuracy")
    right.set_title(f"difference ({t['test']} t, p = {t['p']:.2g})")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


def write_outputs(result: dict[str, Any], out: str, overwrite: bool, name_a: str, name_b: str) -> list[str]:
    """compare.json and compare.png into ``out``; existing ones are replaced only with ``overwrite``."""
    existing = [os.path.join(out, f) for f in OUTPUTS if os.path.exists(os.path.join(out, f))]
    if existing and not overwrite:
        raise DatasetError(f"{existing[0]}: exists; pass --overwrite to replace it, or choose another --out")
    os.makedirs(out, exist_ok=True)
    json_path = os.path.join(out, "compare.json")
    spec.write_json(json_path, result)
    return [json_path, plot_paired(result, os.path.join(out, "compare.png"), name_a, name_b)]


def run(args: argparse.Namespace) -> int:
    """CLI: load both runs, compare, print the report (verdict last), write compare.json and compare.png."""
    a, b = load_run(args.run_a), load_run(args.run_b)
    name_a, name_b = os.path.basename(os.path.normpath(args.run_a)), os.path.basename(os.path.normpath(args.run_b))
    out = args.out or f"compare-{name_a}-vs-{name_b}"
    result = compare_runs(a, b)
    written = write_outputs(result, out, args.overwrite, name_a, name_b)
    print("\n".join(describe(result, args.run_a, args.run_b)), flush=True)
    print(f"shardkit-train: wrote {', '.join(written)}", file=sys.stderr)
    return 0


def register(subparsers: "argparse._SubParsersAction[argparse.ArgumentParser]") -> argparse.ArgumentParser:
    """Add ``compare RUN_A RUN_B`` to a ``shardkit-train`` argument parser."""
    p = subparsers.add_parser(
        "compare",
        help="is the accuracy difference between two fit --repeat N runs real or seed noise?",
        description="Is the accuracy difference between two fit --repeat N runs of one dataset real, seed noise, "
        "or test-set sampling? Prints the per-seed and per-example tests and a one-line verdict.",
    )
    p.add_argument("run_a", metavar="RUN_A", help="run directory made with fit --repeat N")
    p.add_argument("run_b", metavar="RUN_B", help="run directory made with fit --repeat N, same dataset")
    p.add_argument("--out", default=None, metavar="DIR", help="where compare.json and compare.png go (default compare-A-vs-B)")
    p.add_argument("--overwrite", action="store_true", help="replace an existing compare.json / compare.png in --out")
    p.set_defaults(func=run)
    return p
