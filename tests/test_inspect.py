"""shardkit-train inspect on datasets written by the real converter: counts, sizes, decoded examples, PNG."""

from __future__ import annotations

import json
import os
from pathlib import Path

import matplotlib.image
import pandas as pd
import pytest

from shardkit import spec
from shardkit.train import cli
from shardkit.train.inspect import inspect_dataset

from datasets import knots_dataset, proteins_dataset

N_PER_CLASS = 20


@pytest.fixture(scope="module")
def knots(tmp_path_factory: pytest.TempPathFactory) -> str:
    return knots_dataset(tmp_path_factory, n_per_class=N_PER_CLASS, size=24, num_shards=2)


def test_counts_sizes_and_classes(knots: str, tmp_path: Path) -> None:
    summary = inspect_dataset(knots, str(tmp_path / "out"))
    # 20 per class split 0.8/0.1/0.1, stratified exactly.
    expected = {"train": [16, 16, 16], "validation": [2, 2, 2], "test": [2, 2, 2]}
    assert list(summary["splits"]) == ["train", "validation", "test"]
    assert {k: v["class_counts"] for k, v in summary["splits"].items()} == expected
    assert summary["count"] == 3 * N_PER_CLASS
    assert summary["label"]["num_classes"] == 3
    assert summary["splits"]["train"]["num_shards"] == 2
    assert summary["num_shards"] == sum(len(os.listdir(os.path.join(knots, s))) for s in spec.SPLITS)
    for split in summary["splits"].values():
        assert sum(s["count"] for s in split["shards"]) == split["count"]
        assert [sum(c) for c in zip(*(s["class_counts"] for s in split["shards"]))] == split["class_counts"]
        for shard in split["shards"]:
            assert shard["bytes"] == os.path.getsize(os.path.join(knots, shard["path"])) > 0
        assert split["bytes"] == sum(s["bytes"] for s in split["shards"])


def test_decoded_examples_and_image_grid(knots: str, tmp_path: Path) -> None:
    out = tmp_path / "out"
    summary = inspect_dataset(knots, str(out), num_examples=6)
    examples = summary["examples"]
    assert summary["examples_split"] == "train" and len(examples) == 6
    for e in examples:
        assert e["image"]["shape"] == [24, 24, 3] and e["image"]["dtype"] == "uint8"
        assert e["label_name"] == summary["label"]["names"][e["label"]]
        assert 0 <= e["row_id"] < 3 * N_PER_CLASS
    png = matplotlib.image.imread(summary["examples_png"])
    assert summary["examples_png"] == str(out / "examples.png")
    assert png.ndim == 3 and png.shape[0] > 100 and png.shape[1] > 100
    assert png.std() > 0.05, "the grid should show images, not a blank canvas"
    written = json.loads((out / "inspect.json").read_text())
    assert written["splits"]["train"]["class_counts"] == [16, 16, 16]


def test_sequence_examples_decode_back_to_the_source_letters(tmp_path_factory: pytest.TempPathFactory) -> None:
    dataset = proteins_dataset(tmp_path_factory, n=40, max_length=80)
    source = os.path.join(os.path.dirname(dataset), "proteins.parquet")  # where tests/datasets.py writes it
    summary = inspect_dataset(dataset, None, num_examples=5)
    assert "examples_png" not in summary
    meta = spec.read_metadata(dataset)
    vocabulary = meta.feature("sequence").vocabulary
    rows = pd.read_parquet(source)
    for e in summary["examples"]:
        original = rows["Sequence"].iloc[e["row_id"]].upper()  # row_id: the source row index
        assert e["sequence_length"] == len(original)
        expected = "".join(c if c in vocabulary else "?" for c in original[: min(len(original), 60, 80)])
        assert e["sequence"] == expected
        assert e["label_name"] == meta.label.names[e["label"]]


def test_cli_prints_a_report(knots: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["inspect", knots, "--out", str(tmp_path), "--examples", "4"]) == 0
    out = capsys.readouterr().out
    train = spec.read_metadata(knots).splits["train"]
    assert f"train: {train.count} examples in 2 shards" in out
    for shard in train.shards:
        assert shard.path in out
    assert (tmp_path / "examples.png").exists()

    assert cli.main(["inspect", str(tmp_path / "nothing-here")]) == 2
    assert "no such dataset directory" in capsys.readouterr().err
