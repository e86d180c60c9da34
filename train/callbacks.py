"""Resuming after a crash: Keras' BackupAndRestore plus the reader's position inside the epoch, and an
EarlyStopping whose patience survives the restart.

Keras 3 saves the weights every ``save_freq`` steps but on restart replays the whole interrupted epoch.
``ReaderPositionBackup`` records how many steps of the epoch were done, so the trainer restarts the reader
exactly there (``dataset.train_dataset(start_epoch, start_step)``) and the epoch sees each example once.
"""

from __future__ import annotations

import json
import math
import os
from typing import Any, Callable

import keras

POSITION_FILE = "training_metadata.json"


class ReaderPositionBackup(keras.callbacks.BackupAndRestore):
    """Back up weights + optimizer every ``save_freq`` steps and at every epoch end, with the position
    ``{"epoch": e, "step": k}`` = k steps of epoch e done. The first epoch of this ``fit`` may begin at
    ``first_step`` (a resumed epoch), so saved positions count from there. Never saves on an epoch's last
    step: that position is saved, after validation, as the next epoch's step 0."""

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

    def on_epoch_begin(self, epoch: int, logs: dict | None = None) -> None:
        self._epoch = epoch
        self._step = self.first_step if epoch == self.first_epoch else 0

    def on_train_batch_end(self, batch: int, logs: dict | None = None) -> None:
        offset = self.first_step if self._epoch == self.first_epoch else 0
        done = offset + batch + 1
        self._since_save += done - self._step
        self._step = done
        if isinstance(self.save_freq, int) and self._since_save >= self.save_freq and done < self.steps_per_epoch:
            self._save_model()

    def on_epoch_end(self, epoch: int, logs: dict | None = None) -> None:
        self._epoch, self._step = epoch + 1, 0
        self._save_model()

    def _save_model(self) -> None:
        os.makedirs(self.backup_dir, exist_ok=True)
        tmp_weights = os.path.join(self.backup_dir, "incoming.weights.h5")
        self.model.save_weights(filepath=tmp_weights, overwrite=True)
        position = {
            "epoch": self._epoch,
            "batch": self._step - 1,
            "step": self._step,
            "steps_per_epoch": self.steps_per_epoch,
            **self.fingerprint,
        }
        tmp = self._training_metadata_path + ".tmp"
        with open(tmp, "w", encoding="utf-8") as f:
            json.dump(position, f)
        os.replace(tmp_weights, self._weights_path)
        os.replace(tmp, self._training_metadata_path)
        self._since_save = 0


def read_position(backup_dir: str) -> dict[str, Any] | None:
    """The last backed-up position (``epoch``, ``step`` and the run fingerprint), or None."""
    path = os.path.join(backup_dir, POSITION_FILE)
    if not os.path.exists(path) or not os.path.exists(os.path.join(backup_dir, "latest.weights.h5")):
        return None
    with open(path, encoding="utf-8") as f:
        position = json.load(f)
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
