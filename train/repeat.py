"""``fit --repeat N``: train N seeds and summarise the test results where a mean makes sense.

Needs a class target (the stratify target, else the first): its accuracy, recall and confusion matrix are
what is summarised. Writes RUN_DIR/summary.json (seeds, dataset id, settings, per-seed accuracy, loss and per-class recall with
mean +- 95% CI, the confusion matrix summed over seeds) and confusion_test_sum.png. Each seed's run directory
RUN_DIR/seed-<s>/ keeps predictions_test.npz, which ``shardkit-train compare`` pairs example by example.
"""

from __future__ import annotations

import dataclasses
import os
from typing import TYPE_CHECKING, Any

import numpy as np

from shardkit import spec
from shardkit.train import report, stats, targets

if TYPE_CHECKING:  # TensorFlow loads only when a command runs, after shardkit.train.quiet has set its log level
    import tensorflow as tf

SUMMARY_FILE = "summary.json"
PREDICTIONS_FILE = "predictions_test.npz"
# FitConfig fields that say where or how loudly a run went, not what was trained
NOT_SETTINGS = ("dataset", "out", "seed", "repeat", "verbose", "tensorboard")


def seed_dir(run_dir: str, seed: int) -> str:
    return os.path.join(run_dir, f"seed-{seed}")


def fit_repeats(config: Any, strategy: tf.distribute.Strategy, overwrite: bool = False) -> dict[str, Any]:
    """Train seeds ``config.seed .. config.seed + config.repeat - 1``, each into RUN_DIR/seed-<s>/, then
    summarise. A seed an interrupted earlier run finished with the same settings is kept, not retrained."""
    from shardkit.train import fit, rundir
    from shardkit.train.strategy import worker_of

    rundir.check(config.out, None, overwrite)
    metadata = spec.read_metadata(config.dataset)
    label = targets.require_class(metadata, "--repeat", config.dataset)
    summary_path = os.path.join(config.out, SUMMARY_FILE)
    if overwrite and worker_of(strategy).is_chief and os.path.exists(summary_path):
        os.remove(summary_path)  # derived from the seeds, each replaced below
    results = []
    for i in range(config.repeat):
        seed = config.seed + i
        one = dataclasses.replace(config, seed=seed, repeat=1, out=seed_dir(config.out, seed))
        done = None if overwrite else _finished_seed(one)
        results.append(done or fit.run_once(one, strategy, overwrite))
    settings = {k: v for k, v in dataclasses.asdict(config).items() if k not in NOT_SETTINGS}
    accuracy = "accuracy" if len(metadata.targets) == 1 else f"{label.name}_accuracy"
    summary = summarise(results, label.titles, accuracy)
    summary.update(dataset=os.path.abspath(config.dataset), dataset_id=metadata.dataset_id, settings=settings)
    if worker_of(strategy).is_chief:
        if "confusion_matrix_sum" in summary:
            matrix = np.asarray(summary["confusion_matrix_sum"])
            title = f"test, summed over {len(results)} seeds"
            report.plot_confusion(matrix, label.titles, os.path.join(config.out, "confusion_test_sum.png"), title)
        spec.write_json(summary_path, summary)
    for line in describe(summary):
        fit.log(line)
    return summary


def _finished_seed(config: Any) -> dict[str, Any] | None:
    """The result of a seed an earlier (interrupted) --repeat finished with these same settings, or None."""
    from shardkit.train import backends, fit, rundir

    config = dataclasses.replace(config, backend=config.backend or backends.current())
    settings = fit.run_settings(config, spec.read_metadata(config.dataset).dataset_id)
    result = rundir.finished_with(config.out, settings)
    if result is not None:
        fit.log(f"{config.out}: finished earlier with these settings; keeping its results")
    return result


def summarise(results: list[dict[str, Any]], class_titles: tuple[str, ...] | list[str], accuracy: str = "accuracy") -> dict[str, Any]:
    """Per-seed test accuracy (the metric named ``accuracy``: the class target's), loss and per-class recall
    with mean +- 95% CI; the confusion matrices (the class target's) summed.

    Counts (examples, the matrix cells) are not averaged: every seed sees the same test split."""
    seeds = [r["seed"] for r in results]
    per_seed: dict[str, list[float]] = {}
    matrices = []
    for r in results:
        test = r.get("test", {})
        for key, name in ((accuracy, "accuracy"), ("loss", "loss")):
            if key in test:
                per_seed.setdefault(name, []).append(float(test[key]))
        if "confusion_matrix" in test:
            m = np.asarray(test["confusion_matrix"], np.int64)
            matrices.append(m)
            for title, recall in zip(class_titles, class_recall(m)):
                per_seed.setdefault(f"recall {title}", []).append(recall)
    summary: dict[str, Any] = {"seeds": seeds, "test": {}}
    for name, values in per_seed.items():
        mean, half = stats.mean_ci95(values)
        summary["test"][name] = {"mean": mean, "ci95": half, "n": len(values), "values": values}
    if matrices and len(matrices) == len(results):
        summary["confusion_matrix_sum"] = np.sum(matrices, axis=0).tolist()
        summary["test_examples"] = int(matrices[0].sum())
        summary["classes"] = list(class_titles)
    return summary


def class_recall(matrix: np.ndarray) -> list[float]:
    """Recall of each class (row i: examples of class i) from a confusion matrix; NaN for a class with none."""
    m = np.asarray(matrix, np.float64)
    totals = m.sum(axis=1)
    return [float(m[i, i] / totals[i]) if totals[i] else float("nan") for i in range(len(m))]


def describe(summary: dict[str, Any]) -> list[str]:
    """The summary as log lines: one per averaged metric, then where the summed confusion matrix is."""
    n = len(summary["seeds"])
    lines = [
        f"test {name}: {s['mean']:.4f} +- {s['ci95']:.4f} (95% CI over {s['n']} seeds; per seed "
        + " ".join(f"{v:.4f}" for v in s["values"]) + ")"
        for name, s in summary["test"].items()
    ]
    if "confusion_matrix_sum" in summary:
        lines.append(
            f"test confusion matrix summed over {n} seeds of {summary['test_examples']} examples each: "
            f"{summary['confusion_matrix_sum']} (confusion_test_sum.png)"
        )
    return lines
