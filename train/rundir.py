"""Run-directory rules for ``shardkit-train fit``: what may be written into ``--out`` and when.

A finished run is never replaced without ``--overwrite``; an interrupted run resumes only with the dataset
(by id), model, batch size, seed, sampling and Keras backend it started with; a fit that fails before any progress (a
backup or a finished epoch) removes the directory it created; ``--overwrite`` removes only a run's own files. Every refusal
happens before anything is written.
"""

from __future__ import annotations

import fnmatch
import json
import os
import shutil
from typing import Any, Mapping

CONFIG_FILE = "config.json"
FINISHED_FILES = ("metrics.json", "summary.json")  # written last by a single run / by a --repeat run
# Everything a run writes into its directory; --overwrite removes these and refuses to touch anything else.
RUN_ENTRIES = (
    CONFIG_FILE, "history.csv", "best.weights.h5", "model.weights.h5", "model.keras", "metrics.json",
    "summary.json", "training_curves.png", "confusion_*.png", "regression_*.png", "labels_*.png", "evaluation_*.json",
    "predictions_*.npz", "logs",
    "backup", "seed-*", "worker-*", "*.tmp",
)
# The settings an interrupted run must be resumed with, and how the command line spells them.
RESUME_SETTINGS = {"dataset_id": "dataset", "model": "--model", "batch_size": "--batch-size", "seed": "--seed",
                   "sampling": "--sampling", "backend": "--backend"}


def is_run_entry(name: str) -> bool:
    """Whether a directory entry is something a run writes (and ``--overwrite`` may remove)."""
    return any(fnmatch.fnmatchcase(name, pattern) for pattern in RUN_ENTRIES)


def foreign_entries(path: str) -> list[str]:
    """Entries of ``path`` that no run wrote (a user's notes, another tool's output, a config.json that is
    not a run's), sorted."""
    foreign = [e for e in os.listdir(path) if not is_run_entry(e)]
    if os.path.exists(os.path.join(path, CONFIG_FILE)) and read_config(path) is None:
        foreign.append(CONFIG_FILE)
    return sorted(foreign)


def finished(path: str) -> bool:
    """A run directory whose run completed (metrics.json or, for --repeat, summary.json written)."""
    return any(os.path.exists(os.path.join(path, name)) for name in FINISHED_FILES)


def read_json(path: str) -> dict[str, Any] | None:
    """A JSON object file as a dict, or None when it is missing or unreadable."""
    try:
        with open(path, encoding="utf-8") as f:
            value = json.load(f)
    except (OSError, ValueError):
        return None
    return value if isinstance(value, dict) else None


def read_config(path: str) -> dict[str, Any] | None:
    """The run's config.json as a dict, or None when there is none or it is not a run's."""
    config = read_json(os.path.join(path, CONFIG_FILE))
    return config if config is not None and {"dataset", "model", "batch_size"} <= config.keys() else None


def check(path: str, settings: Mapping[str, Any] | None, overwrite: bool) -> None:
    """Refuse (ValueError, one line) to train into ``path`` when that would silently lose or mix a run.

    ``settings`` is the new run's config.json content (dataset_id included); None skips the resume check
    (a --repeat directory, whose seeds are checked one by one).
    """
    if not os.path.exists(path):
        return
    if not os.path.isdir(path):
        raise ValueError(f"{path}: is a file, not a run directory; choose another --out")
    if not os.listdir(path):
        return
    foreign = foreign_entries(path)
    if overwrite:
        if foreign:
            raise ValueError(
                f"{path}: holds files that are not part of a shardkit-train run ({_names(foreign)}); "
                "refusing to replace it; move them or choose another --out"
            )
        return
    if finished(path):
        done = next(name for name in FINISHED_FILES if os.path.exists(os.path.join(path, name)))
        raise ValueError(
            f"{path}: holds a finished run ({done}); pass --overwrite to replace it, or choose another --out"
        )
    old = read_config(path)
    if old is None:
        if foreign:
            raise ValueError(
                f"{path}: exists and is not a shardkit-train run directory (holds {_names(foreign)}); "
                "choose another --out"
            )
        return
    if settings is not None:
        difference = _difference(old, settings)
        if difference:
            raise ValueError(
                f"{path}: holds an interrupted run {difference}; rerun with its settings to resume it, "
                "or pass --overwrite or another --out to start over"
            )


def _difference(old: Mapping[str, Any], new: Mapping[str, Any]) -> str | None:
    """The first resume setting that differs, phrased with both values; None when resuming is safe."""
    for key, flag in RESUME_SETTINGS.items():
        if key == "dataset_id":
            if old.get("dataset_id"):
                if old["dataset_id"] != new.get("dataset_id"):
                    return (f"of dataset id {old['dataset_id']} ({old.get('dataset')}), "
                            f"this run reads dataset id {new.get('dataset_id')} ({new.get('dataset')})")
            elif os.path.abspath(str(old.get("dataset"))) != os.path.abspath(str(new.get("dataset"))):
                return f"of dataset {old.get('dataset')}, this run reads {new.get('dataset')}"
            continue
        if key in old and old[key] != new.get(key):
            return f"with {flag} {old[key]}, this run has {flag} {new.get(key)}"
    return None


def finished_with(path: str, settings: Mapping[str, Any], ignore: tuple[str, ...] = ("verbose", "dataset", "out", "absolute_paths")) -> dict[str, Any] | None:
    """The metrics.json of a run finished in ``path`` with exactly these settings (those in ``ignore`` aside:
    they change no result), or None. Lets a rerun of an interrupted ``--repeat`` keep the seeds it finished."""
    old, metrics = read_config(path), read_json(os.path.join(path, "metrics.json"))
    if old is None or metrics is None:
        return None
    if {k: v for k, v in old.items() if k not in ignore} != {k: v for k, v in settings.items() if k not in ignore}:
        return None
    return metrics


def prepare(path: str, overwrite: bool, keep: tuple[str, ...] = ("worker-*",)) -> list[str]:
    """Make ``path`` ready to write (after ``check``): create it, or with ``overwrite`` remove the old run's
    files (except entries matching ``keep``: other workers' directories, which each worker replaces itself).
    Returns the directories created, innermost first, for ``discard``."""
    created = []
    parent = os.path.abspath(path)
    while not os.path.exists(parent):
        created.append(parent)
        parent = os.path.dirname(parent)
    os.makedirs(path, exist_ok=True)
    if overwrite and not created:
        for name in os.listdir(path):
            if is_run_entry(name) and not any(fnmatch.fnmatchcase(name, k) for k in keep):
                full = os.path.join(path, name)
                shutil.rmtree(full) if os.path.isdir(full) and not os.path.islink(full) else os.remove(full)
    return created


def holds_progress(path: str) -> bool:
    """Whether a run directory holds anything worth keeping: a backup to resume from, a finished run, or at
    least one epoch in history.csv (Keras' CSVLogger creates the file empty when training starts)."""
    history = os.path.join(path, "history.csv")
    return any(os.path.exists(os.path.join(path, name)) for name in ("backup", *FINISHED_FILES)) or (
        os.path.exists(history) and os.path.getsize(history) > 0
    )


def discard(path: str, created: list[str]) -> None:
    """After a failed fit: remove the directories it created, unless they hold progress (``holds_progress``)."""
    if not created or holds_progress(path):
        return
    shutil.rmtree(created[0], ignore_errors=True)
    for directory in created[1:]:
        try:
            os.rmdir(directory)
        except OSError:
            break


def _names(entries: list[str], most: int = 3) -> str:
    shown = ", ".join(entries[:most])
    return shown + (f" and {len(entries) - most} more" if len(entries) > most else "")
