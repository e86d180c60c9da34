"""``shardkit-train bench``: a verdict with its numbers on a tiny dataset built by the real converter."""

from __future__ import annotations

import json
import re

from datasets import knots_dataset, proteins_dataset

from shardkit.train.cli import main
from shardkit.train.diagnose import Diagnosis


def test_bench_prints_one_line_verdict(tmp_path_factory, capsys):
    path = knots_dataset(tmp_path_factory, n_per_class=40, size=32, num_shards=2)
    assert main(["bench", path, "--model", "knot-cnn", "--batch-size", "8", "--steps", "3", "--warmup", "1"]) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    assert len(lines) == 1
    assert re.match(r"^(not )?input-bound: ", lines[0])
    assert lines[0].count("ex/s") >= 3 and "knot-cnn" in lines[0]


def test_bench_json_numbers_agree_with_verdict(tmp_path_factory, capsys):
    path = proteins_dataset(tmp_path_factory, n=200, max_length=64, num_shards=2)
    assert main(["bench", path, "--batch-size", "16", "--steps", "3", "--warmup", "1", "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["model"] == "protein-cnn"  # the preset for a sequence dataset
    for key in ("reader_examples_per_s", "compute_examples_per_s", "fed_examples_per_s"):
        assert out[key] > 0
    assert out["verdict"].startswith("input-bound" if out["input_bound"] else "not input-bound")


def test_verdict_logic():
    fast_reader = Diagnosis("d", "m", 32, 10, reader_examples_per_s=5000, compute_examples_per_s=100,
                            fed_examples_per_s=98)
    assert not fast_reader.input_bound and fast_reader.verdict().startswith("not input-bound")
    slow_reader = Diagnosis("d", "m", 32, 10, 50, 100, 48)
    assert slow_reader.input_bound and "50 ex/s" in slow_reader.verdict()
    contended = Diagnosis("d", "m", 32, 10, 500, 100, 60)
    assert contended.input_bound and "compete" in contended.verdict()
    for d in (fast_reader, slow_reader, contended):
        assert " m " in d.verdict() and d.verdict().count("ex/s") >= 3  # every verdict names the model and its rates


def test_bench_rejects_dataset_smaller_than_a_batch(tmp_path_factory, capsys):
    path = knots_dataset(tmp_path_factory, n_per_class=40, size=32, num_shards=2)
    assert main(["bench", path, "--batch-size", "4096"]) == 2
    err = capsys.readouterr().err
    assert path in err and "fewer than one batch" in err


def test_cycle_length_takes_a_count_or_auto(capsys):
    import pytest

    from shardkit.train.cli import parser

    fit = ["fit", "d", "--model", "knot-cnn", "--epochs", "1", "--batch-size", "8", "--out", "r"]
    assert parser().parse_args([*fit, "--cycle-length", "auto"]).cycle_length is None
    assert parser().parse_args(["bench", "d", "--cycle-length", "3"]).cycle_length == 3
    with pytest.raises(SystemExit):
        parser().parse_args([*fit, "--cycle-length", "0"])
    assert "positive number of shards or 'auto'" in capsys.readouterr().err
