"""shardkit-train verify on datasets written by the real converter: clean, damaged, and leaking."""

from __future__ import annotations

import dataclasses
import os
import shutil
from pathlib import Path

import pytest
import tensorflow as tf

from shardkit import spec
from shardkit.train import cli
from shardkit.train.verify import verify_dataset

from datasets import knots_dataset, record_offsets


@pytest.fixture(scope="module")
def knots(tmp_path_factory: pytest.TempPathFactory) -> str:
    return knots_dataset(tmp_path_factory, n_per_class=20, size=24, num_shards=2)


@pytest.fixture(scope="module")
def knots_gz(tmp_path_factory: pytest.TempPathFactory) -> str:
    return knots_dataset(tmp_path_factory, n_per_class=20, size=24, num_shards=2, compression="gzip")


def copy_of(dataset: str, tmp_path: Path) -> str:
    return str(shutil.copytree(dataset, tmp_path / "dataset"))


def verify_cli(dataset: str, capsys: pytest.CaptureFixture[str]) -> tuple[int, str]:
    rc = cli.main(["verify", dataset])
    return rc, capsys.readouterr().out


@pytest.mark.parametrize("name", ["knots", "knots_gz"])
def test_clean_dataset_verifies(name: str, request: pytest.FixtureRequest, capsys: pytest.CaptureFixture[str]) -> None:
    dataset = request.getfixturevalue(name)
    assert verify_dataset(dataset) == []
    rc, out = verify_cli(dataset, capsys)
    meta = spec.read_metadata(dataset)
    assert rc == 0 and out.startswith("OK") and f"{sum(s.count for s in meta.splits.values())} records" in out


def test_truncated_shard_is_named(knots: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    dataset = copy_of(knots, tmp_path)
    shard = spec.read_metadata(dataset).splits["train"].shards[1]
    path = os.path.join(dataset, shard.path)
    offsets = record_offsets(path)
    cut_record = len(offsets) // 2
    cut_at = offsets[cut_record][0] + 8 + 4 + offsets[cut_record][1] // 2  # mid-payload of that record
    os.truncate(path, cut_at)

    problems = verify_dataset(dataset)
    corrupt = [p for p in problems if p.kind == "corrupt"]
    assert [(p.path, p.record) for p in corrupt] == [(shard.path, cut_record)]
    assert any(p.kind == "size" and p.path == shard.path for p in problems)
    assert any(p.kind == "count" and p.path == shard.path and f"read {cut_record} records" in p.message for p in problems)
    assert {p.path for p in problems} <= {shard.path, "train"}, problems
    rc, out = verify_cli(dataset, capsys)
    assert rc == 1 and out.startswith("FAILED") and f"{shard.path} record {cut_record}" in out


def test_shard_cut_at_a_record_boundary_is_named(knots: str, tmp_path: Path) -> None:
    """CRCs can't see a file that ends cleanly after an earlier record: sizes and counts must."""
    dataset = copy_of(knots, tmp_path)
    shard = spec.read_metadata(dataset).splits["validation"].shards[0]
    path = os.path.join(dataset, shard.path)
    os.truncate(path, record_offsets(path)[-1][0])
    problems = verify_dataset(dataset)
    assert {p.kind for p in problems} == {"size", "count"}
    assert any(p.path == shard.path and f"read {shard.count - 1} records" in p.message for p in problems)


def test_flipped_byte_is_named(knots: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    dataset = copy_of(knots, tmp_path)
    shard = spec.read_metadata(dataset).splits["train"].shards[0]
    path = os.path.join(dataset, shard.path)
    offset, length = record_offsets(path)[3]
    data = bytearray(Path(path).read_bytes())
    data[offset + 12 + length // 2] ^= 0x01
    Path(path).write_bytes(bytes(data))

    problems = verify_dataset(dataset)
    corrupt = [p for p in problems if p.kind == "corrupt"]
    assert [(p.path, p.record) for p in corrupt] == [(shard.path, 3)]
    assert "corrupted record" in corrupt[0].message
    assert not any(p.kind == "size" for p in problems), "a flipped byte keeps the size"
    rc, out = verify_cli(dataset, capsys)
    assert rc == 1 and f"{shard.path} record 3" in out


def test_flipped_byte_in_gzip_shard_is_named(knots_gz: str, tmp_path: Path) -> None:
    dataset = copy_of(knots_gz, tmp_path)
    shard = spec.read_metadata(dataset).splits["train"].shards[1]
    path = os.path.join(dataset, shard.path)
    data = bytearray(Path(path).read_bytes())
    data[len(data) // 2] ^= 0x01
    Path(path).write_bytes(bytes(data))
    problems = verify_dataset(dataset)
    assert [p.path for p in problems if p.kind == "corrupt"] == [shard.path]


def test_missing_and_stray_shards_are_named(knots: str, tmp_path: Path) -> None:
    dataset = copy_of(knots, tmp_path)
    meta = spec.read_metadata(dataset)
    gone = meta.splits["test"].shards[0].path
    os.remove(os.path.join(dataset, gone))
    stray = "train/train-00007-of-00009.tfrecord"
    shutil.copy(os.path.join(dataset, meta.splits["train"].shards[0].path), os.path.join(dataset, stray))
    problems = verify_dataset(dataset)
    assert ("missing", gone) in {(p.kind, p.path) for p in problems}
    assert ("stray", stray) in {(p.kind, p.path) for p in problems}


def test_missing_metadata_is_a_problem(knots: str, tmp_path: Path) -> None:
    dataset = copy_of(knots, tmp_path)
    os.remove(os.path.join(dataset, spec.METADATA_FILE))
    [problem] = verify_dataset(dataset)
    assert problem.kind == "metadata" and problem.path == spec.METADATA_FILE


def append_record(dataset: str, split: str, record: bytes, label: int) -> str:
    """Append one record to a split's first shard and fix every count and size in metadata.json to match."""
    meta = spec.read_metadata(dataset)
    shard = meta.splits[split].shards[0]
    path = os.path.join(dataset, shard.path)
    records = [r.numpy() for r in tf.data.TFRecordDataset(path, compression_type=meta.compression or "")]
    with tf.io.TFRecordWriter(path, options=meta.compression or "") as w:
        for r in [*records, record]:
            w.write(r)
    bump = lambda counts: tuple(c + (i == label) for i, c in enumerate(counts))  # noqa: E731
    new_shard = dataclasses.replace(
        shard, count=shard.count + 1, bytes=os.path.getsize(path), class_counts=bump(shard.class_counts)
    )
    info = meta.splits[split]
    new_info = dataclasses.replace(
        info, count=info.count + 1, class_counts=bump(info.class_counts), shards=(new_shard, *info.shards[1:])
    )
    spec.write_metadata(dataclasses.replace(meta, splits={**meta.splits, split: new_info}), dataset)
    return shard.path


def a_train_record(dataset: str) -> tuple[bytes, tf.train.Example]:
    meta = spec.read_metadata(dataset)
    path = meta.shard_paths(dataset, "train")[0]
    record = next(iter(tf.data.TFRecordDataset(path, compression_type=meta.compression or ""))).numpy()
    return record, tf.train.Example.FromString(record)


def test_row_copied_into_another_split_is_a_leak(knots: str, tmp_path: Path) -> None:
    dataset = copy_of(knots, tmp_path)
    record, example = a_train_record(dataset)
    row_id = example.features.feature["row_id"].int64_list.value[0]
    label = example.features.feature["label"].int64_list.value[0]
    test_shard = append_record(dataset, "test", record, label)

    problems = verify_dataset(dataset)
    assert [p.kind for p in problems] == ["leak"], problems
    [leak] = problems
    train_shard = spec.read_metadata(dataset).splits["train"].shards[0].path
    assert leak.path == test_shard and f"row_id {row_id}" in leak.message and train_shard in leak.message


def test_same_content_under_another_row_id_is_a_leak(knots_gz: str, tmp_path: Path) -> None:
    """A leak between splits: a duplicated source row (new id, same bytes) lands in validation and train."""
    dataset = copy_of(knots_gz, tmp_path)
    _, example = a_train_record(dataset)
    meta = spec.read_metadata(dataset)
    new_id = 1 + max(
        int(tf.train.Example.FromString(r.numpy()).features.feature["row_id"].int64_list.value[0])
        for s in meta.splits
        for r in tf.data.TFRecordDataset(meta.shard_paths(dataset, s), compression_type="GZIP")
    )
    example.features.feature["row_id"].int64_list.value[0] = new_id
    label = example.features.feature["label"].int64_list.value[0]
    shard = append_record(dataset, "validation", example.SerializeToString(), label)

    problems = verify_dataset(dataset)
    assert [p.kind for p in problems] == ["leak"], problems
    assert problems[0].path == shard and "same content" in problems[0].message and str(new_id) in problems[0].message



def test_row_written_twice_in_one_split_is_a_duplicate(knots: str, tmp_path: Path) -> None:
    dataset = copy_of(knots, tmp_path)
    record, example = a_train_record(dataset)
    row_id = example.features.feature["row_id"].int64_list.value[0]
    shard = append_record(dataset, "train", record, example.features.feature["label"].int64_list.value[0])
    problems = verify_dataset(dataset)
    assert [(p.kind, p.path) for p in problems] == [("duplicate", shard)], problems
    assert f"row_id {row_id} also in {shard} record 0" in problems[0].message
