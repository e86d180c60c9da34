"""Shared fixtures: small source files written by shardkit.convert.examples and converter helpers."""

from __future__ import annotations

import contextlib
import glob
import io
import os
import sys
from typing import Any, Callable

import numpy as np
import pytest

sys.path.insert(0, os.path.dirname(__file__))


@pytest.fixture(scope="session")
def knots_h5(tmp_path_factory: Any) -> str:
    """Class-sorted 24x24x3 knot images, 40 per class, in a PyTables EArray."""
    from shardkit.convert.examples import write_knots

    return write_knots(str(tmp_path_factory.mktemp("src") / "knots.h5"), 40, size=24, seed=1)


@pytest.fixture(scope="session")
def proteins_parquet(tmp_path_factory: Any) -> str:
    from shardkit.convert.examples import write_proteins

    return write_proteins(str(tmp_path_factory.mktemp("src") / "proteins.parquet"), 300, seed=2, max_length=120)


@pytest.fixture(scope="session")
def features_h5(tmp_path_factory: Any) -> str:
    from shardkit.convert.examples import write_feature_sequences

    return write_feature_sequences(str(tmp_path_factory.mktemp("src") / "features.h5"), 60, seed=3, timesteps=5, dim=8)


def run_convert(argv: list[str]) -> tuple[int, str]:
    """Run ``shardkit.convert.cli.main`` in-process, quiet and with one worker unless ``argv`` says otherwise
    (worker start-up costs more than these tiny inputs); (return code, captured stderr)."""
    from shardkit.convert.cli import main

    cut = argv.index("--") if "--" in argv else len(argv)
    ours = [*argv[:cut], *([] if "--workers" in argv else ["--workers", "1"]), *(["--quiet"] if cut == len(argv) else [])]
    err = io.StringIO()
    with contextlib.redirect_stderr(err):
        rc = main([*ours, *argv[cut:]])
    return rc, err.getvalue()


@pytest.fixture
def convert() -> Callable[[list[str]], tuple[int, str]]:
    return run_convert


def shard_bytes(out: str) -> dict[str, bytes]:
    """Every shard file of a dataset, relative path -> bytes."""
    files = sorted(glob.glob(os.path.join(out, "*", "*.tfrecord*")))
    return {os.path.relpath(f, out): open(f, "rb").read() for f in files}


def read_split(out: str, split: str) -> dict[str, np.ndarray]:
    """All records of a split via tf.data, parsed with the spec; feature -> stacked numpy values."""
    import tensorflow as tf

    from shardkit.spec import parse_spec, read_metadata

    meta = read_metadata(out)
    ds = tf.data.TFRecordDataset(meta.shard_paths(out, split), compression_type=meta.compression or "")
    spec = parse_spec(meta.features)
    cols: dict[str, list[Any]] = {k: [] for k in spec}
    for rec in ds:
        ex = tf.io.parse_single_example(rec, spec)
        for k, v in ex.items():
            cols[k].append(v.numpy())
    return {k: np.array(v, dtype=object if v and isinstance(v[0], bytes) else None) for k, v in cols.items()}


def no_leftovers(out: str) -> bool:
    """Nothing published at ``out`` and no temp dir of ours left beside it."""
    parent, name = os.path.split(os.path.abspath(out))
    return not os.path.exists(out) and not [e for e in os.listdir(parent) if e.startswith(f".{name}.shardkit-tmp-")]


IMAGE_ARGS = ["--kind", "image", "--data", "/train_data", "--label", "/train_label", "--image-shape", "24,24,3"]


def array_h5_with_bad_value(path: str, rows: int, cols: int, bad_row: int, bad: float) -> str:
    """A PyTables file with float32 ``/x`` (rows x cols, ``bad`` at [bad_row, 0]) and labels ``/y``."""
    import tables

    x = np.ones((rows, cols), np.float32)
    x[bad_row, 0] = bad
    with tables.open_file(path, "w") as f:
        f.create_array("/", "x", x)
        f.create_array("/", "y", np.arange(rows) % 3)
    return path


def random_images_h5(path: str, rows: int) -> str:
    """A PyTables file of ``rows`` random 32x32x3 images (/x, flat uint8) with class-sorted labels /y in 0..2."""
    import tables

    rng = np.random.default_rng(0)
    with tables.open_file(path, "w") as f:
        f.create_array("/", "x", rng.integers(0, 256, (rows, 32 * 32 * 3), dtype=np.uint8))
        f.create_array("/", "y", np.sort(rng.integers(0, 3, rows)))
    return path
