"""Damaged shards end to end: verify names them, training stops naming the file, --skip-corrupt goes on.

The trainer's cases for damaged shards live here (tests/test_train_fit.py keeps the missing metadata.json).

The datasets come from the real converter; the damage is done to the bytes on disk, the way a bad copy,
a full disk or a flaky network would do it.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import pytest

from shardkit import spec
from shardkit.train import cli
from shardkit.train.verify import verify_dataset

from datasets import knots_dataset, record_offsets


@pytest.fixture(scope="module")
def knots(tmp_path_factory: pytest.TempPathFactory) -> str:
    return knots_dataset(tmp_path_factory, n_per_class=20, size=24, num_shards=2)


def flip_byte(path: str, record: int) -> None:
    offset, length = record_offsets(path)[record]
    data = bytearray(Path(path).read_bytes())
    data[offset + 12 + length // 2] ^= 0x01
    Path(path).write_bytes(bytes(data))


def truncate_in(path: str, record: int) -> None:
    offset, length = record_offsets(path)[record]
    os.truncate(path, offset + 12 + length // 2)


DAMAGE = {"flipped-byte": flip_byte, "truncated": truncate_in}


def damaged_copy(knots: str, tmp_path: Path, damage: str, record: int) -> tuple[str, spec.ShardInfo]:
    dataset = str(shutil.copytree(knots, tmp_path / "dataset"))
    shard = spec.read_metadata(dataset).splits["train"].shards[1]
    DAMAGE[damage](os.path.join(dataset, shard.path), record)
    return dataset, shard


def fit(dataset: str, out: Path, *extra: str) -> int:
    return cli.main(
        ["fit", dataset, "--model", "knot-cnn", "--epochs", "1", "--batch-size", "8", "--out", str(out),
         "--verbose", "0", "--no-tensorboard", "--patience", "0", *extra]
    )


@pytest.mark.parametrize("damage", sorted(DAMAGE))
def test_verify_names_the_damaged_shard(damage: str, knots: str, tmp_path: Path) -> None:
    dataset, shard = damaged_copy(knots, tmp_path, damage, record=5)
    corrupt = [p for p in verify_dataset(dataset) if p.kind == "corrupt"]
    assert [(p.path, p.record) for p in corrupt] == [(shard.path, 5)]


# What the trainer prints for each damage: a flipped byte fails the record's CRC (found when it is read); a
# truncated shard no longer has the size metadata.json records (found before training starts).
STOP_MESSAGE = {"flipped-byte": "training stopped on a damaged shard: {path}: record 5",
                "truncated": "{path}: shard is {size} bytes but metadata.json records {bytes}: truncated or modified"}


@pytest.mark.parametrize("damage", sorted(DAMAGE))
def test_training_stops_naming_the_file(
    damage: str, knots: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    dataset, shard = damaged_copy(knots, tmp_path, damage, record=5)
    full = os.path.join(dataset, shard.path)
    assert fit(dataset, tmp_path / "run") == 2
    err = capsys.readouterr().err
    assert STOP_MESSAGE[damage].format(path=full, size=os.path.getsize(full), bytes=shard.bytes) in err, err[-2000:]
    assert "Traceback" not in err
    if damage == "flipped-byte":
        assert "(use --skip-corrupt to read around it)" in err
    assert not (tmp_path / "run" / "metrics.json").exists()


@pytest.mark.parametrize("damage", sorted(DAMAGE))
def test_skip_corrupt_finishes_and_reports_lost_records(
    damage: str, knots: str, tmp_path: Path, capsys: pytest.CaptureFixture[str], recwarn: pytest.WarningsRecorder
) -> None:
    dataset, shard = damaged_copy(knots, tmp_path, damage, record=5)
    lost = shard.count - 5  # the damaged record and everything after it in that shard
    run = tmp_path / "run"
    assert fit(dataset, run, "--skip-corrupt", "--verbose", "2") == 0
    full = os.path.join(dataset, shard.path)
    captured = capsys.readouterr()
    assert f"--skip-corrupt: {full}: {lost} records lost" in captured.err
    # docs/train.md: Keras never says "ran out of data", even with fewer records than metadata.json counts
    # (in-process, its warning lands in recwarn)
    keras_said = " ".join(str(w.message) for w in recwarn) + captured.out + captured.err
    assert "ran out of data" not in keras_said.lower()
    metrics = json.loads((run / "metrics.json").read_text())
    assert metrics["lost_records"] == {full: lost}
    assert metrics["plan"]["examples_per_epoch"] == spec.read_metadata(knots).splits["train"].count - lost
