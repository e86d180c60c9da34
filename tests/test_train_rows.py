"""Real rows in the trainer: several features, any kind of target, and format version 1 still training.

Datasets: tests/v2data.py writes small version 2 datasets record by record; tests/fixtures/v1-* are
version 1 datasets written by the converter before the format changed.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import v2data
from shardkit import spec
from shardkit.train import dataset as reader
from shardkit.train.options import ReadOptions

TESTS = os.path.dirname(os.path.abspath(__file__))
FIXTURES = os.path.join(TESTS, "fixtures")


@pytest.fixture(scope="module")
def rows(tmp_path_factory: pytest.TempPathFactory) -> str:
    return v2data.learnable(str(tmp_path_factory.mktemp("rows") / "dataset"))


@pytest.fixture(scope="module")
def scalar(tmp_path_factory: pytest.TempPathFactory) -> str:
    return v2data.scalar_regression(str(tmp_path_factory.mktemp("scalar") / "dataset"))


def shapes(value: object) -> object:
    """(dtype, shape) of a tensor, or of each tensor of a dict."""
    if isinstance(value, dict):
        return {k: shapes(v) for k, v in value.items()}
    return (value.dtype.name, tuple(value.shape))


def test_several_features_and_targets_read_as_dicts_of_their_kinds(rows: str) -> None:
    x, y = next(iter(reader.eval_dataset(rows, "test", 5)))
    assert shapes(x) == {"scan": ("uint8", (5, 8, 8, 1)), "dose": ("float32", (5,)), "site": ("int32", (5,))}
    assert shapes(y) == {"kind": ("int32", (5,)), "tags": ("float32", (5, 3)), "score": ("float32", (5,))}
    ids = reader.read_row_ids(rows, "test")[:5]  # v2data.learnable: test rows are 420.. in row order
    site = x["site"].numpy()
    assert (y["kind"].numpy() == np.array([0, 1, 2, 2])[site]).all()
    assert (y["tags"].numpy()[:, 1] == (site < 2)).all()
    np.testing.assert_allclose(y["score"].numpy(), 2 * x["dose"].numpy() + 1, atol=0.5)
    x, _ = next(iter(reader.eval_dataset(rows, "test", 5, ReadOptions(with_row_id=True, rescale_images=True))))
    assert sorted(x) == ["dose", "row_id", "scan", "site"] and (x["row_id"].numpy() == ids).all()
    assert x["scan"].dtype.name == "float32" and float(x["scan"].numpy().max()) <= 1.0


def test_one_feature_and_one_target_still_yield_bare_tensors(scalar: str) -> None:
    x, y = next(iter(reader.eval_dataset(scalar, "test", 4)))
    assert shapes(x) == ("float32", (4,)) and shapes(y) == ("float32", (4,))  # an int64 scalar reads as float32
    np.testing.assert_allclose(y.numpy(), x.numpy() / 10, rtol=1e-6)
    x, _ = next(iter(reader.eval_dataset(scalar, "test", 4, ReadOptions(with_row_id=True))))
    assert sorted(x) == ["row_id", "x"]
    for name, kind in (("v1-knots", ("uint8", (3, 8, 8, 3))), ("v1-proteins", ("float32", (3, 40, 21)))):
        x, y = next(iter(reader.eval_dataset(os.path.join(FIXTURES, name), "train", 3)))
        assert shapes(x) == kind and shapes(y) == ("int32", (3,))


def test_balanced_sampling_without_a_class_target_is_refused(scalar: str) -> None:
    with pytest.raises(spec.DatasetError, match="--sampling balanced needs a class target"):
        next(iter(reader.train_dataset(scalar, 4, 1, sampling="balanced")))
