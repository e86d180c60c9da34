"""The few shardkit calls the benchmarks make, in one place: the training reader, a compiled preset model, and
the in-memory baseline arrays. Imports only numpy, TensorFlow/Keras and shardkit (safe on a bare GPU image)."""

from __future__ import annotations

from typing import Any

import numpy as np


def train_reader(dataset_dir: str, batch_size: int, epochs: int = 1, seed: int = 0, **read_options: Any):
    """shardkit's training tf.data stream (shuffled, decoded, prefetched) for ``epochs`` epochs."""
    from shardkit.train.dataset import ReadOptions, train_dataset

    return train_dataset(dataset_dir, batch_size, epochs, seed, options=ReadOptions(**read_options))


def epoch_seconds(dataset_dir: str, batch_size: int, epochs: int, **read_options: Any) -> tuple[list[float], int]:
    """Wall seconds of each epoch of one continuous training stream (as ``fit`` consumes it, nothing else
    running), and the examples per epoch."""
    import time

    from shardkit.train.dataset import ReadOptions, open_dataset, plan, train_dataset

    ds = open_dataset(dataset_dir)
    steps = plan(ds, batch_size).steps_per_epoch
    start = time.perf_counter()
    stream = iter(train_dataset(ds, batch_size, epochs, seed=0, options=ReadOptions(**read_options)))
    times, n = [], 0
    for _ in range(epochs):
        n = 0
        for _ in range(steps):
            _, y = next(stream)
            n += int(y.shape[0])
        times.append(time.perf_counter() - start)
        start = time.perf_counter()
    return times, n


def reader_defaults() -> dict[str, Any]:
    """The reader's interleave settings, recorded with each measurement of it (results outlive defaults)."""
    from shardkit.train.dataset import ReadOptions

    o = ReadOptions()
    return {"cycle_length": o.cycle_length, "block_length": o.block_length, "read_buffer_bytes": o.read_buffer_bytes}


def build_compiled_model(name: str, dataset_dir: str, jit: bool = False, **read_options: Any):
    """The trainer's preset ``name`` built for this dataset's spec and compiled as ``shardkit-train fit`` does
    (``jit``: XLA, like ``fit --xla``)."""
    from shardkit.spec import read_metadata
    from shardkit.train.dataset import ReadOptions
    from shardkit.train.models import build_model, compile_model

    meta = read_metadata(dataset_dir)
    model = build_model(name, meta, ReadOptions(**read_options))
    compile_model(model, meta, jit=jit)
    return model


def load_h5_arrays(h5_path: str, dataset_dir: str) -> tuple[np.ndarray, np.ndarray]:
    """The whole knot HDF5 source in memory as uint8 images shaped like the dataset's feature, and int32 labels."""
    import tables

    from shardkit.spec import read_metadata

    shape = read_metadata(dataset_dir).features[0].shape
    with tables.open_file(h5_path, "r") as f:
        x = f.root.train_data[:].reshape(-1, *shape)
        y = f.root.train_label[:].astype(np.int32)
    return x, y
