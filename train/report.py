"""Run outputs: confusion matrix, per-example predictions, training-curve and confusion PNGs."""

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
    """Loss and accuracy per epoch, training and validation, as one PNG."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    metrics = [m for m in ("loss", "accuracy") if m in history]
    fig, axes = plt.subplots(1, len(metrics), figsize=(5 * len(metrics), 3.5), squeeze=False)
    epochs = [int(e) for e in history.get("epoch", range(1, len(history.get("loss", [])) + 1))]  # numbered from 1
    for ax, m in zip(axes[0], metrics):
        ax.plot(epochs, history[m], marker="o", label="train")
        if f"val_{m}" in history:
            ax.plot(epochs, history[f"val_{m}"], marker="o", label="validation")
        ax.set_xlabel("epoch")
        ax.set_title(m)
        ax.legend()
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


def write_predictions(path: str, row_id: np.ndarray, label: np.ndarray, predicted: np.ndarray) -> str:
    """Per-example test predictions (row_id, label, predicted class), so runs can be compared example by example."""
    tmp = path + ".tmp.npz"
    np.savez_compressed(tmp, row_id=np.asarray(row_id, np.int64), label=np.asarray(label, np.int64),
                        predicted=np.asarray(predicted, np.int64))
    os.replace(tmp, path)
    return path


def read_predictions(path: str) -> dict[str, np.ndarray]:
    """``write_predictions``' arrays: row_id, label, predicted."""
    with np.load(path) as f:
        return {k: f[k] for k in ("row_id", "label", "predicted")}
