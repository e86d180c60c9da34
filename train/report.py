"""Run outputs: confusion matrix, regression and per-label scores, per-example predictions, and their PNGs."""

from __future__ import annotations

import csv
import math
import os
from typing import Sequence

import numpy as np


def confusion_matrix(labels: np.ndarray, predicted: np.ndarray, num_classes: int) -> np.ndarray:
    """counts[i, j] = examples of class i predicted as j."""
    m = np.zeros((num_classes, num_classes), np.int64)
    np.add.at(m, (np.asarray(labels, np.int64), np.asarray(predicted, np.int64)), 1)
    return m


def read_history(path: str) -> dict[str, list[float]]:
    """history.csv as columns (epochs numbered from 1), keeping the last row of each epoch; a missing value
    ("" or Keras CSVLogger's "NA") reads as NaN."""
    rows: dict[int, dict[str, str]] = {}
    with open(path, newline="", encoding="utf-8") as f:
        for row in csv.DictReader(f):
            rows[int(row["epoch"])] = row
    cols: dict[str, list[float]] = {}
    for epoch in sorted(rows):
        for k, v in rows[epoch].items():
            cols.setdefault(k, []).append(float(v) if v not in ("", "NA", None) else math.nan)
    return cols


def plot_history(history: dict[str, list[float]], path: str) -> str:
    """Loss and every metric per epoch (each target's too), training and validation, as one PNG."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    metrics = [m for m in history if m != "epoch" and not m.startswith("val_")]
    metrics = sorted(metrics, key=lambda m: (m != "loss", m != "accuracy", m))
    cols = min(4, len(metrics)) or 1
    rows = -(-len(metrics) // cols) or 1
    fig, axes = plt.subplots(rows, cols, figsize=(5 * cols, 3.5 * rows), squeeze=False)
    epochs = [int(e) for e in history.get("epoch", range(1, len(history.get("loss", [])) + 1))]  # numbered from 1
    for ax, m in zip(axes.flat, metrics):
        ax.plot(epochs, history[m], marker="o", label="train")
        if f"val_{m}" in history:
            ax.plot(epochs, history[f"val_{m}"], marker="o", label="validation")
        ax.set_xlabel("epoch")
        ax.set_title(m)
        ax.legend()
    for ax in list(axes.flat)[len(metrics):]:
        ax.axis("off")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


def plot_confusion(matrix: np.ndarray, names: Sequence[str], path: str, title: str = "test") -> str:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    k = len(names)
    fig, ax = plt.subplots(figsize=(1.2 * k + 2.5, 1.2 * k + 2))
    ax.imshow(matrix, cmap="Blues")
    ax.set_xticks(range(k), names, rotation=45, ha="right")
    ax.set_yticks(range(k), names)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    ax.set_title(f"confusion matrix ({title})")
    top = matrix.max() if matrix.size else 0
    for i in range(k):
        for j in range(k):
            ax.text(j, i, str(matrix[i, j]), ha="center", va="center", color="white" if matrix[i, j] > top / 2 else "black")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


def regression_scores(true: np.ndarray, predicted: np.ndarray) -> dict[str, float]:
    """R² (1 - residual / total sum of squares, over all values; NaN for constant targets), MAE and RMSE."""
    t, p = np.asarray(true, np.float64).reshape(-1), np.asarray(predicted, np.float64).reshape(-1)
    total = float(((t - t.mean()) ** 2).sum()) if t.size else 0.0
    residual = float(((t - p) ** 2).sum())
    return {
        "r2": 1 - residual / total if total > 0 else math.nan,
        "mae": float(np.abs(t - p).mean()) if t.size else math.nan,
        "rmse": math.sqrt(residual / t.size) if t.size else math.nan,
    }


def auc(truth: np.ndarray, score: np.ndarray) -> float:
    """Area under the ROC curve of one binary label (the Mann-Whitney U statistic, ties counted half);
    NaN when the examples hold only one of the two values."""
    positive = np.asarray(truth) > 0.5
    n1, n0 = int(positive.sum()), int((~positive).sum())
    if not n1 or not n0:
        return math.nan
    score = np.asarray(score, np.float64)
    ranks = np.empty(len(score))
    ranks[np.argsort(score, kind="mergesort")] = np.arange(1, len(score) + 1)
    _, tie, counts = np.unique(score, return_inverse=True, return_counts=True)
    ranks = (np.bincount(tie, weights=ranks) / counts)[tie]
    return float((ranks[positive].sum() - n1 * (n1 + 1) / 2) / (n1 * n0))


def label_scores(truth: np.ndarray, probability: np.ndarray, names: Sequence[str]) -> dict[str, object]:
    """Per label of a multi-label target: AUC, accuracy at 0.5 and how many examples carry it."""
    truth, probability = np.asarray(truth), np.asarray(probability)
    labels = {}
    for i, name in enumerate(names):
        labels[name] = {
            "auc": auc(truth[:, i], probability[:, i]),
            "accuracy": float(((probability[:, i] > 0.5) == (truth[:, i] > 0.5)).mean()) if len(truth) else math.nan,
            "positives": int((truth[:, i] > 0.5).sum()),
        }
    return {"labels": labels}


def plot_regression(true: np.ndarray, predicted: np.ndarray, path: str, title: str = "test") -> str:
    """Predicted against true values (every value of every example), with the identity line and R²."""
    from matplotlib.figure import Figure

    t, p = np.asarray(true, np.float64).reshape(-1), np.asarray(predicted, np.float64).reshape(-1)
    fig = Figure(figsize=(4.5, 4.5))
    ax = fig.add_subplot()
    ax.scatter(t, p, s=8, alpha=0.6)
    if t.size:
        lo, hi = float(min(t.min(), p.min())), float(max(t.max(), p.max()))
        ax.plot([lo, hi], [lo, hi], color="gray", linewidth=1)
    ax.set_xlabel("true")
    ax.set_ylabel("predicted")
    ax.set_title(f"predicted vs true ({title}), R² {regression_scores(t, p)['r2']:.3f}")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    return path


def plot_label_scores(scores: dict[str, object], path: str, title: str = "test") -> str:
    """``label_scores``' AUC and accuracy of each label as grouped bars."""
    from matplotlib.figure import Figure

    labels: dict = scores["labels"]  # type: ignore[assignment]
    names = list(labels)
    x = np.arange(len(names))
    fig = Figure(figsize=(1.0 * len(names) + 3, 3.5))
    ax = fig.add_subplot()
    ax.bar(x - 0.2, [labels[n]["auc"] for n in names], 0.4, label="AUC")
    ax.bar(x + 0.2, [labels[n]["accuracy"] for n in names], 0.4, label="accuracy")
    ax.set_xticks(x, names, rotation=45, ha="right")
    ax.set_ylim(0, 1)
    ax.set_title(f"per-label scores ({title})")
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    return path


def write_predictions(path: str, row_id: np.ndarray, label: np.ndarray | None = None, predicted: np.ndarray | None = None,
                      **targets: np.ndarray) -> str:
    """Per-example predictions: row_id; label and predicted class of the primary class target (what ``compare``
    pairs), when there is one; and any ``<target>_true`` / ``<target>_predicted`` arrays."""
    arrays = {"row_id": np.asarray(row_id, np.int64), **{k: np.asarray(v) for k, v in targets.items()}}
    if label is not None and predicted is not None:
        arrays.update(label=np.asarray(label, np.int64), predicted=np.asarray(predicted, np.int64))
    tmp = path + ".tmp.npz"
    np.savez_compressed(tmp, **arrays)
    os.replace(tmp, path)
    return path


def read_predictions(path: str) -> dict[str, np.ndarray]:
    """``write_predictions``' arrays: row_id, label, predicted."""
    with np.load(path) as f:
        return {k: f[k] for k in ("row_id", "label", "predicted")}
