"""--class-names: stored beside the source values, and shown by inspect and in the confusion matrix."""

from __future__ import annotations

import json

from conftest import IMAGE_ARGS, run_convert
from shardkit.spec import read_metadata
from shardkit.train.inspect import inspect_dataset

NAMES = ("unknot", "plus_trefoil", "minus_trefoil")


def test_class_names_are_kept_with_the_source_values(knots_h5: str, tmp_path) -> None:
    out = str(tmp_path / "ds")
    rc, err = run_convert([knots_h5, "--out", out, *IMAGE_ARGS, "--class-names", ",".join(NAMES)])
    assert rc == 0, err
    label = read_metadata(out).label
    assert label.names == ("0", "1", "2") and label.display_names == NAMES and label.titles == NAMES
    with open(f"{out}/metadata.json", encoding="utf-8") as f:
        assert json.load(f)["targets"][0]["display_names"] == list(NAMES)  # format version 2
    summary = inspect_dataset(out)
    assert summary["label"]["names"] == list(NAMES)
    assert {e["label_name"] for e in summary["examples"]} <= set(NAMES)


def test_without_class_names_titles_are_the_source_values(knots_h5: str, tmp_path) -> None:
    out = str(tmp_path / "ds")
    rc, err = run_convert([knots_h5, "--out", out, *IMAGE_ARGS])
    assert rc == 0, err
    label = read_metadata(out).label
    assert label.display_names is None and label.titles == label.names == ("0", "1", "2")
