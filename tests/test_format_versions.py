"""Format version 2 describes every feature and target; datasets written as version 1 still read, verify and train."""

from __future__ import annotations

import dataclasses
import os
import shutil
import subprocess
import sys

import pytest

from shardkit import spec

FIXTURES = os.path.join(os.path.dirname(__file__), "fixtures")


@pytest.mark.parametrize("name, feature, classes", [("v1-knots", "image", 3), ("v1-proteins", "sequence", 7)])
def test_a_version_1_dataset_reads_as_one_feature_and_one_class_target(name: str, feature: str, classes: int) -> None:
    meta = spec.read_metadata(os.path.join(FIXTURES, name))
    assert meta.format_version == 1 and meta.single and meta.stratify == "label"
    assert meta.features[0].kind == feature and meta.label.kind == "class" and meta.label.num_classes == classes
    assert meta.dataset_id == spec.content_id(meta)  # the id version 1 recorded is the id computed now


def test_version_2_metadata_round_trips_every_feature_and_target_kind() -> None:
    base = spec.read_metadata(os.path.join(FIXTURES, "v1-knots"))
    meta = dataclasses.replace(
        base,
        features=base.features + (
            spec.Feature("age", "scalar", (), "float32", "float"),
            spec.Feature("site", "category", (), "int64", "index", categories=("a", "b")),
        ),
        targets=base.targets + (
            spec.Target(2, ("x", "y"), "multihot", name="tags", kind="multilabel"),
            spec.Target(name="size", kind="regression", shape=(2,)),
        ),
        format_version=spec.FORMAT_VERSION,
    )
    meta = dataclasses.replace(meta, dataset_id=spec.content_id(meta))
    import json

    again = spec.Metadata.from_dict(json.loads(meta.to_json()))
    assert again == meta and not again.single
    assert again.target("tags").value_shape == (2,) and again.target("size").value_shape == (2,)


@pytest.mark.parametrize("bad", [
    lambda m: dataclasses.replace(m, targets=m.targets + (spec.Target(1, ("a",), name="image"),)),
    lambda m: dataclasses.replace(m, stratify="nope"),
    lambda m: spec.Feature("x_length", "scalar", (), "int64", "int64"),
    lambda m: spec.Feature("c", "category", (), "int64", "index"),
])
def test_inconsistent_metadata_is_refused(bad) -> None:
    meta = spec.read_metadata(os.path.join(FIXTURES, "v1-knots"))
    with pytest.raises((ValueError, KeyError)):
        bad(meta)


def test_verify_passes_on_version_1_datasets(tmp_path) -> None:
    for name in ("v1-knots", "v1-proteins"):
        shutil.copytree(os.path.join(FIXTURES, name), tmp_path / name)
        run = subprocess.run([sys.executable, "-m", "shardkit.train", "verify", "--quiet", str(tmp_path / name)],
                             capture_output=True, text=True)
        assert run.returncode == 0, run.stdout + run.stderr
