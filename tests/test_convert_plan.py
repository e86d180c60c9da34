"""Split/shuffle/shard planning: pure functions on small columns."""

from __future__ import annotations

import numpy as np
import pytest

from shardkit.convert import plan


def test_parse_fractions() -> None:
    assert plan.parse_fractions("0.8,0.1,0.1") == (0.8, 0.1, 0.1)
    assert plan.parse_fractions("0.9,0.1") == (0.9, 0.1, 0.0)
    for bad in ("0.8,0.1", "0.5,0.6,-0.1", "a,b", "0.2,0.2,0.2,0.4"):
        with pytest.raises(ValueError, match="--split"):
            plan.parse_fractions(bad)


@pytest.mark.parametrize("sizes", [(1000, 10, 333), (7, 7, 7, 7, 7, 7, 7), (1, 2, 3, 997)])
def test_stratified_split_exact(sizes: tuple[int, ...]) -> None:
    labels = np.repeat(np.arange(len(sizes)), sizes)
    fr = (0.8, 0.1, 0.1)
    parts = plan.stratified_split(labels, fr, np.random.default_rng(0))
    allrows = np.concatenate(parts)
    assert sorted(allrows.tolist()) == list(range(len(labels)))
    for s, part in enumerate(parts):
        counts = np.bincount(labels[part], minlength=len(sizes))
        for c, n in enumerate(sizes):
            assert abs(counts[c] - fr[s] * n) < 1 + 1e-9, (s, c, counts[c], fr[s] * n)
        assert abs(len(part) - fr[s] * len(labels)) <= len(sizes)


def test_stratified_split_is_shuffled_and_seeded() -> None:
    labels = np.repeat(np.arange(3), 300)
    a = plan.stratified_split(labels, (0.8, 0.1, 0.1), np.random.default_rng(5))
    b = plan.stratified_split(labels, (0.8, 0.1, 0.1), np.random.default_rng(5))
    c = plan.stratified_split(labels, (0.8, 0.1, 0.1), np.random.default_rng(6))
    assert all((x == y).all() for x, y in zip(a, b))
    assert not (a[0] == c[0]).all()
    assert not (np.diff(a[0]) > 0).all()


def test_group_split_keeps_groups_whole() -> None:
    rng = np.random.default_rng(1)
    groups = rng.integers(0, 400, 3000)
    labels = groups % 5
    parts = plan.group_split(labels, groups, (0.8, 0.1, 0.1), np.random.default_rng(0))
    seen = [set(groups[p].tolist()) for p in parts]
    assert not (seen[0] & seen[1]) and not (seen[0] & seen[2]) and not (seen[1] & seen[2])
    assert sorted(np.concatenate(parts).tolist()) == list(range(3000))
    for p, f in zip(parts, (0.8, 0.1, 0.1)):
        assert abs(len(p) / 3000 - f) < 0.05
        assert set(labels[p].tolist()) == set(range(5))


def test_shard_counts_and_plan() -> None:
    assert plan.shard_count(1000, 1e6, 128e6) == 8
    assert plan.shard_count(3, 1e9, 1e6) == 3
    assert plan.split_shard_counts([800, 100, 100], 4, 1, 1) == [4, 1, 1]
    assert plan.split_shard_counts([800, 100, 0], None, 1e6, 100e6) == [50, 1, 0]  # at least 16 rows a shard
    assert plan.split_shard_counts([8000, 100, 0], None, 1e6, 100e6) == [80, 1, 0]  # by size, above the minimum
    assert plan.split_shard_counts([8000, 100, 0], None, 1e3, 100e6) == [64, 1, 0]  # the minimum
    assert plan.split_shard_counts([20, 5, 5], None, 1e3, 100e6) == [1, 1, 1]
    labels = np.arange(10) % 2
    split_rows = [(0, np.arange(10)[::-1]), (0, np.zeros(0, int)), (0, np.zeros(0, int))]
    shard_plan = plan.ShardPlan(split_rows, [labels], [np.arange(10) + 100], [0], [3, 0, 0], None)
    tasks = list(shard_plan.tasks())
    assert [t.path for t in tasks] == [f"train/train-0000{i}-of-00003.tfrecord" for i in range(3)]
    assert [t.ref for t in tasks] == shard_plan.refs() and [r.count for r in shard_plan.refs()] == [4, 3, 3]
    assert np.concatenate([t.rows for t in tasks]).tolist() == list(range(9, -1, -1))
    assert tasks[0].row_ids.tolist() == [109, 108, 107, 106]
    no_ids = plan.ShardPlan(split_rows, [labels], [None], [100], [3, 0, 0], None)
    assert [t.row_ids.tolist() for t in no_ids.tasks()] == [t.row_ids.tolist() for t in tasks]


def test_labels_mapped_in_blocks_match_one_pass(tmp_path, monkeypatch) -> None:
    """Labels read in blocks (to bound the planner's memory) map to the same ids as the whole column, and a
    bad label is reported at its row in the file, not in its block."""
    import h5py

    from shardkit.convert import pipeline
    from shardkit.convert.encoders import label_spec
    from shardkit.convert.errors import InputError

    path = str(tmp_path / "l.h5")
    labels = np.random.default_rng(1).choice([40, -3, 7, 1000], 1000)
    labels[:300] = 7  # the first blocks miss some classes
    with h5py.File(path, "w") as f:
        f["x"] = np.zeros((1000, 2), np.float32)
        f["y"] = labels
    from shardkit.convert import targets

    monkeypatch.setattr(targets, "LABEL_BLOCK_ROWS", 128)
    cfg = pipeline.ConvertConfig(inputs=(path,), out=str(tmp_path / "o"), kind="array", data="/x", label="/y")
    prep = pipeline.prepare(cfg)
    spec, ids = label_spec(labels, "")
    assert prep.label == spec and prep.plan.labels[0].dtype == np.int8
    assert (prep.plan.labels[0] == ids).all()
    with h5py.File(path, "a") as f:
        del f["y"]
        f["y"] = np.where(np.arange(1000) == 700, np.nan, labels.astype(float))
    with pytest.raises(InputError, match="row 700: label missing"):
        pipeline.prepare(cfg)
