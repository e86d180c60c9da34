"""Resuming after a crash: Keras' BackupAndRestore plus the reader's position inside the epoch and the
state weights do not hold, an EarlyStopping whose patience survives the restart, and the run's history.csv.

Keras 3 saves the weights every ``save_freq`` steps but on restart replays the whole interrupted epoch.
``ReaderPositionBackup`` records how many steps of the epoch were done, so the trainer restarts the reader
exactly there (``dataset.train_dataset(start_epoch, start_step)``) and the epoch sees each example once. It
also records every random-generator state (Dropout's masks come from them) and the epoch's running metric
sums, so the resumed run draws the same masks and reports the whole epoch, as the uninterrupted run does.
"""

from __future__ import annotations

import csv
import io
import json
import math
import os
from typing import Any, Callable

import keras
import numpy as np

from shardkit import spec
from shardkit.train import keras_compat

POSITION_FILE = "training_metadata.json"


class ReaderPositionBackup(keras_compat.BackupAndRestore):
    """Back up weights + optimizer every ``save_freq`` steps and at every epoch end, with the position
    ``{"epoch": e, "step": k}`` = k steps of epoch e done. The first epoch of this ``fit`` may begin at
    ``first_step`` (a resumed epoch), so saved positions count from there. Never saves on an epoch's last
    step: that position is saved, after validation, as the next epoch's step 0.

    Each backup's weights go to a file of their own, named in the position file, which is replaced last; the
    previous weights are removed only then, so a crash at any moment leaves a matching pair."""

    def __init__(
        self,
        backup_dir: str,
        steps_per_epoch: int,
        save_freq: int | str = "epoch",
        first_epoch: int = 0,
        first_step: int = 0,
        fingerprint: dict[str, Any] | None = None,
        delete_checkpoint: bool = True,
    ) -> None:
        super().__init__(backup_dir, save_freq=save_freq, delete_checkpoint=delete_checkpoint)
        self.steps_per_epoch = steps_per_epoch
        self.first_epoch, self.first_step = first_epoch, first_step
        self.fingerprint = fingerprint or {}
        self._epoch, self._step, self._since_save = first_epoch, first_step, 0

    def on_train_begin(self, logs: dict | None = None) -> None:
        position = read_position(self.backup_dir)
        if position is not None:
            self.weights_path = os.path.join(self.backup_dir, position["weights"])
        super().on_train_begin(logs)
        if position is not None and "state" in position:
            restore_state(self.model, position["state"], "seed_generators", self.backup_dir)

    def on_epoch_begin(self, epoch: int, logs: dict | None = None) -> None:
        self._epoch = epoch
        self._step = self.first_step if epoch == self.first_epoch else 0
        if self._step > 0:  # Keras has just reset the metrics: put back the sums of the steps done before the crash
            position = read_position(self.backup_dir)
            if position is not None and "state" in position:
                restore_state(self.model, position["state"], "metrics", self.backup_dir)

    def on_train_batch_end(self, batch: int, logs: dict | None = None) -> None:
        offset = self.first_step if self._epoch == self.first_epoch else 0
        done = offset + batch + 1
        self._since_save += done - self._step
        self._step = done
        if isinstance(self.save_freq, int) and self._since_save >= self.save_freq and done < self.steps_per_epoch:
            self.save_backup()

    def on_epoch_end(self, epoch: int, logs: dict | None = None) -> None:
        self._epoch, self._step = epoch + 1, 0
        self.save_backup()

    def save_backup(self) -> None:
        os.makedirs(self.backup_dir, exist_ok=True)
        tmp_weights = os.path.join(self.backup_dir, "incoming.weights.h5")
        self.model.save_weights(filepath=tmp_weights, overwrite=True)
        weights = f"epoch{self._epoch}-step{self._step}.weights.h5"
        position = {
            "epoch": self._epoch,
            "batch": self._step - 1,
            "step": self._step,
            "steps_per_epoch": self.steps_per_epoch,
            **self.fingerprint,
            "weights": weights,
            "state": training_state(self.model),
        }
        os.replace(tmp_weights, os.path.join(self.backup_dir, weights))
        spec.write_text(self.metadata_path, json.dumps(position))
        for name in os.listdir(self.backup_dir):
            if name.endswith(".weights.h5") and name not in (weights, "incoming.weights.h5"):
                os.remove(os.path.join(self.backup_dir, name))
        self._since_save = 0


def read_position(backup_dir: str) -> dict[str, Any] | None:
    """The last backed-up position (``epoch``, ``step`` and the run fingerprint), or None."""
    path = os.path.join(backup_dir, POSITION_FILE)
    if not os.path.exists(path):
        return None
    with open(path, encoding="utf-8") as f:
        position = json.load(f)
    position.setdefault("weights", "latest.weights.h5")
    if not os.path.exists(os.path.join(backup_dir, position["weights"])):
        return None
    position.setdefault("step", 0)
    return position


class ResumableEarlyStopping(keras.callbacks.EarlyStopping):
    """EarlyStopping that counts patience across a crash: each ``fit`` starts from the run's history so far
    (best value, its epoch, epochs waited since) and from the best weights saved at ``best_weights_path``,
    instead of from scratch."""

    def __init__(self, history: Callable[[], list[float]], best_weights_path: str | None = None, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.history = history
        self.best_weights_path = best_weights_path

    def on_train_begin(self, logs: dict | None = None) -> None:
        super().on_train_begin(logs)
        keras_compat.set_monitor_op(self)  # now, or Keras may reset the restored best at the first epoch end
        history = self.history()
        values = [(epoch, v) for epoch, v in enumerate(history) if math.isfinite(v)]
        if not values:
            return
        pick = max if self.mode == "max" else min
        self.best_epoch, self.best = pick(values, key=lambda ev: ev[1])
        self.wait = len(history) - 1 - self.best_epoch
        if self.restore_best_weights and self.best_weights_path and os.path.exists(self.best_weights_path):
            current = self.model.get_weights()
            self.model.load_weights(self.best_weights_path)
            self.best_weights = self.model.get_weights()
            self.model.set_weights(current)


def _tracked(model: keras.Model) -> dict[str, list]:
    """The state a resume needs beyond what ``save_weights`` stores (weights, optimizer): every
    ``SeedGenerator`` of the model (Dropout, LSTM dropout, ...) plus Keras' global one, and the metrics'
    running sums."""
    weights = {id(w) for w in model.weights}
    generators = [v for v in model.variables if id(v) not in weights]
    global_state = keras_compat.global_seed_state()
    if global_state is not None:
        generators.append(global_state)
    return {"seed_generators": generators, "metrics": list(model.metrics_variables)}


def _components(variable: Any) -> list:
    """The per-device copies of a (possibly distributed) variable: one per replica under MirroredStrategy,
    where metric sums differ between replicas; else the variable itself (on every backend)."""
    value = getattr(variable, "value", variable)
    return list(value.values) if hasattr(value, "values") and not callable(value.values) else [variable]


def training_state(model: keras.Model) -> dict[str, list]:
    """Random-generator states and metric sums as JSON: ``{kind: [[path, [per-replica values]], ...]}``."""
    return {
        kind: [[v.path, [np.asarray(c.numpy()).tolist() for c in _components(v)]] for v in variables]
        for kind, variables in _tracked(model).items()
    }


def restore_state(model: keras.Model, state: dict[str, list], kind: str, where: str) -> None:
    """Assign one kind of saved state (``seed_generators`` or ``metrics``) back, variable by variable."""
    saved = state.get(kind, [])
    variables = _tracked(model)[kind]
    if kind == "seed_generators" and len(saved) == len(variables) + 1:
        variables.append(keras_compat.global_seed_state(create=True))  # saved after the first unseeded random op
    # matched by order, not by path: layer names carry a per-process counter (dropout, dropout_1, ...)
    if len(saved) != len(variables):
        raise ValueError(f"{where}: the backup's {kind.replace('_', ' ')} do not match this model; resume with the same --model")
    for variable, (_, values) in zip(variables, saved):
        components = _components(variable)
        if len(components) != len(values):
            raise ValueError(f"{where}: backup made with {len(values)} replica(s), this run has {len(components)}")
        if any(np.shape(value) != tuple(component.shape) for component, value in zip(components, values)):
            raise ValueError(f"{where}: the backup's {kind.replace('_', ' ')} do not match this model; resume with the same --model")
        for component, value in zip(components, values):
            component.assign(np.asarray(value, dtype=getattr(component.dtype, "as_numpy_dtype", component.dtype)))


def truncate_history(path: str, epochs_done: int) -> None:
    """Keep the rows of history.csv for epochs 1..``epochs_done`` (1-based), the ones a backup at the start of
    epoch ``epochs_done + 1`` reflects; rows written after that backup are rewritten by the resumed run."""
    if not os.path.exists(path):
        return
    with open(path, newline="", encoding="utf-8") as f:
        rows = list(csv.reader(f))
    if not rows:
        return
    kept = [rows[0]] + [r for r in rows[1:] if r and int(r[0]) <= epochs_done]
    if len(kept) == len(rows):
        return
    text = io.StringIO()
    csv.writer(text).writerows(kept)
    spec.write_text(path, text.getvalue())


class HistoryLogger(keras.callbacks.Callback):
    """history.csv: one row per epoch, numbered from 1 (as Keras' progress bar and metrics.json's best_epoch),
    with the columns the logs have (no ``val_`` columns without a validation split). Appends, so a resumed
    run continues the file."""

    def __init__(self, path: str) -> None:
        super().__init__()
        self.path = path

    def on_epoch_end(self, epoch: int, logs: dict | None = None) -> None:
        logs = logs or {}
        keys = sorted(logs)
        new = not os.path.exists(self.path) or os.path.getsize(self.path) == 0
        with open(self.path, "a", newline="", encoding="utf-8") as f:
            writer = csv.writer(f)
            if new:
                writer.writerow(["epoch", *keys])
            writer.writerow([epoch + 1, *(float(logs[k]) for k in keys)])
