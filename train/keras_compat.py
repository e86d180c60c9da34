"""Every use of Keras' private code, in one place, checked against the Keras versions it was tested with.

The trainer needs a few things Keras 3 offers no public way to do. Each is one function or class here, whose
docstring says what it is for and why the public API does not do it; the rest of the trainer uses only these
and public Keras. Importing this module refuses a Keras outside ``TESTED_KERAS``, where these private names may
have changed meaning without failing loudly.

What applies on which Keras backend:

===============================  ==========  ===  =====
                                 tensorflow  jax  torch
===============================  ==========  ===  =====
``average_multiworker_logs``     yes         -    -      (tf.distribute only)
``build_from_batch``             yes         -    -      (tf.distribute only)
``exact_last_execution``         yes         yes  -      (torch runs one step per call)
``global_seed_state``            yes         yes  yes
``set_monitor_op``               yes         yes  yes
``BackupAndRestore``             yes         yes  yes
===============================  ==========  ===  =====
"""

from __future__ import annotations

import itertools
from typing import Any

import keras

TESTED_KERAS = ("3.15", "3.16")  # tested from the first up to, not including, the second; pyproject pins the same


def _version(text: str) -> tuple[int, ...]:
    return tuple(int(part) for part in text.split(".")[:2] if part.isdigit())


def check_version(version: str = keras.__version__) -> None:
    """Refuse a Keras outside the tested range, in one line that names the version and the way out."""
    least, below = TESTED_KERAS
    if not _version(least) <= _version(version) < _version(below):
        raise ImportError(
            f"keras {version} is outside the range shardkit-train is tested with (>={least},<{below}); "
            f"install one in it: pip install 'keras>={least},<{below}'"
        )


check_version()


def average_multiworker_logs() -> None:
    """Make Keras average the scalar logs across workers under MultiWorkerMirroredStrategy.

    Keras' TensorFlow train/test step reduces them with ``reduce_per_replica(..., "auto")``, which calls
    ``strategy.reduce(MEAN, v, axis=0)``: that fails on scalars with several workers. The patch reduces with
    ``axis=None`` there and leaves every other case to Keras. Idempotent."""
    import tensorflow as tf
    from keras.src.backend.tensorflow import trainer as tf_trainer

    original = tf_trainer.reduce_per_replica
    if getattr(original, "shardkit_fixed", False):
        return

    def reduce_per_replica(values, strategy, reduction):
        if reduction in ("auto", "mean") and tf_trainer._collective_all_reduce_multi_worker(strategy):
            return tf.nest.map_structure(
                lambda v: strategy.reduce("MEAN", v, axis=None) if isinstance(v, tf.distribute.DistributedValues) else v,
                values,
            )
        return original(values, strategy, reduction)

    reduce_per_replica.shardkit_fixed = True
    tf_trainer.reduce_per_replica = reduce_per_replica


def build_from_batch(model: keras.Model, batch: Any) -> None:
    """Build the model, its optimizer and metric state from one local batch, then stop ``fit`` building again.

    ``fit`` builds through ``_maybe_symbolic_build``, which under MultiWorkerMirroredStrategy all-reduces the
    first (x, y) batch and fails on nested inputs and uneven replica batches (keras-team/keras#20329). Call
    inside ``strategy.scope()``."""
    model._symbolic_build(data_batch=batch)
    if model.optimizer is not None and not model.optimizer.built:
        model.optimizer.build(model.trainable_variables)
    model._maybe_symbolic_build = lambda iterator=None, data_batch=None: None


def exact_last_execution() -> None:
    """Make the last call of an epoch run only the steps left in it when ``steps_per_execution`` does not
    divide the epoch's steps.

    Keras' ``EpochIterator`` hands the train function the whole input iterator and reports steps
    ``begin..begin + steps_per_execution - 1`` for every call; with ``steps_per_epoch`` set, the epoch's last call
    then trains on the first batches of the next epoch and reports steps past the epoch's end (to the progress
    bar and to per-batch callbacks). The patch ends that call's step range at the epoch's last step and hands
    it an iterator limited to those batches (the TensorFlow and JAX train functions step through any Python
    iterator of batches, stopping where it ends), counting only those steps as seen. Idempotent."""
    from keras.src.trainers import epoch_iterator

    original = epoch_iterator.EpochIterator._enumerate_iterator
    if getattr(original, "shardkit_fixed", False):
        return

    def _enumerate_iterator(self):
        last = (self.steps_per_epoch or self._num_batches or 0) - 1
        for begin, end, iterator in original(self):
            if self.steps_per_execution > 1 and 0 <= last < end:
                self._steps_seen -= end - last  # counted as a whole call; a stream of known length ends by it
                yield begin, last, itertools.islice(iterator, last - begin + 1)
            else:
                yield begin, end, iterator

    _enumerate_iterator.shardkit_fixed = True
    epoch_iterator.EpochIterator._enumerate_iterator = _enumerate_iterator


def global_seed_state(create: bool = False) -> Any:
    """The state variable of Keras' global ``SeedGenerator`` (unseeded random ops draw from it), or None when
    no op has made one yet and not ``create``. A resume must save and restore it to draw the same numbers, and
    Keras keeps it in private global state."""
    from keras.src.backend.common import global_state
    from keras.src.random import seed_generator

    if create:
        return seed_generator.global_seed_generator().state
    generator = global_state.get_global_attribute(getattr(seed_generator, "GLOBAL_SEED_GENERATOR", "global_seed_generator"))
    return None if generator is None else generator.state


def set_monitor_op(callback: keras.callbacks.Callback) -> None:
    """Decide a monitoring callback's direction (min or max) now, not at its first ``on_epoch_end``.

    From Keras 3.3 on the direction is set lazily at the first epoch end, and up to 3.6 setting it also resets
    ``best``: a ``best`` restored before then is lost. Calling this before restoring makes the restore stick."""
    if getattr(callback, "monitor_op", None) is None:
        callback._set_monitor_op()


class BackupAndRestore(keras.callbacks.BackupAndRestore):
    """Keras' BackupAndRestore with its private save hook and file paths under public names.

    Keras' own epoch and batch hooks call ``_save_model``, and ``on_train_begin`` restores from the private
    ``_weights_path`` / ``_training_metadata_path``; a subclass that writes its own backups implements
    ``save_backup`` and reads or points at the files through ``weights_path`` and ``metadata_path``."""

    def _save_model(self) -> None:
        self.save_backup()

    def save_backup(self) -> None:
        super()._save_model()

    @property
    def weights_path(self) -> str:
        return self._weights_path

    @weights_path.setter
    def weights_path(self, path: str) -> None:
        self._weights_path = path

    @property
    def metadata_path(self) -> str:
        return self._training_metadata_path
