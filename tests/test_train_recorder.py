"""A user model (``--model test_train_recorder:build``) that records the row ids each step trains on.

Used by the trainer tests in subprocesses (PYTHONPATH=tests): every training batch appends one line of
row ids to $SHARDKIT_ROW_LOG (inference batches to $SHARDKIT_ROW_LOG.eval); with $SHARDKIT_KILL_AFTER=N
the process SIGKILLs itself while running training batch N (1-based, counted over the whole run).
"""

from __future__ import annotations

import os
import signal

import keras
import numpy as np
import tensorflow as tf

from shardkit.spec import Metadata


class RowRecorder(keras.layers.Layer):
    """Pass ``x`` through; as a side effect log the batch's row ids (training and inference separately)."""

    def __init__(self, path: str, kill_after: int = 0, **kwargs):
        super().__init__(**kwargs)
        self.log_path, self.kill_after, self.batches = path, kill_after, 0

    def _log(self, ids: tf.Tensor, training: bool) -> np.int64:
        with open(self.log_path if training else self.log_path + ".eval", "a", encoding="utf-8") as f:
            f.write(" ".join(str(i) for i in ids.numpy().tolist()) + "\n")
        if training:
            self.batches += 1
            if self.kill_after and self.batches >= self.kill_after:
                os.kill(os.getpid(), signal.SIGKILL)
        return np.int64(0)

    def call(self, x, row_id, training=None):
        done = tf.py_function(lambda ids: self._log(ids, bool(training)), [row_id], tf.int64)
        with tf.control_dependencies([done]):
            return tf.identity(x)


def build(metadata: Metadata) -> keras.Model:
    """A small CNN over uint8 images that takes (image, row_id) and records row ids."""
    f = metadata.features[0]
    image = keras.Input(f.shape, dtype="uint8", name=f.name)
    row_id = keras.Input((), dtype="int64", name="row_id")
    x = keras.layers.Rescaling(1 / 255.0)(image)
    x = RowRecorder(os.environ.get("SHARDKIT_ROW_LOG", os.devnull), int(os.environ.get("SHARDKIT_KILL_AFTER", "0")))(x, row_id)
    x = keras.layers.Conv2D(8, 3, strides=2, activation="relu")(x)
    x = keras.layers.GlobalAveragePooling2D()(x)
    out = keras.layers.Dense(metadata.label.num_classes, activation="softmax")(x)
    return keras.Model({f.name: image, "row_id": row_id}, out, name="recorder")


def read_log(path: str) -> list[np.ndarray]:
    """One array of row ids per logged batch, in order."""
    if not os.path.exists(path):
        return []
    with open(path, encoding="utf-8") as f:
        return [np.array(line.split(), dtype=np.int64) for line in f if line.strip()]
