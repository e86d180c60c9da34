"""The Beam job carries one small ref per shard; each shard's rows travel as a plan file the worker reads."""

from __future__ import annotations

import numpy as np

from shardkit.convert import plan
from shardkit.convert.encoders import SequenceEncoder
from shardkit.convert.runner import build_job
from shardkit.convert.shards import EncodeConfig, load_task, save_plan
from shardkit.convert.sources import SourceSpec


def _tasks(rows: int, shards: int, seed: int = 0) -> list[plan.ShardTask]:
    labels = np.random.default_rng(seed).integers(0, 7, rows)
    parts = plan.stratified_split(labels, (0.8, 0.1, 0.1), np.random.default_rng(seed))
    per_split = plan.split_shard_counts([len(p) for p in parts], shards, 1.0, 1.0)
    return list(plan.ShardPlan([(0, p) for p in parts], [labels], [None], [0], per_split, None).tasks())


def test_job_graph_is_o_shards_not_rows() -> None:
    """3,000,000 rows in 1,153 train shards (issue 18's largest measured case) submit a graph under 1 MB."""
    import apache_beam as beam

    tasks = _tasks(3_000_000, 1153)
    assert sum(t.ref.count for t in tasks) == 3_000_000
    enc = EncodeConfig(SequenceEncoder(50), "sequence", None, "/tmp/unused", (SourceSpec("x.parquet", "s", "y"),))
    p = beam.Pipeline()
    build_job(p, [t.ref for t in tasks], enc)
    size = len(p.to_runner_api().SerializeToString())
    assert size < 1_000_000, size
    small = beam.Pipeline()
    build_job(small, [t.ref for t in _tasks(30_000, 1153)], enc)
    assert size < 1.1 * len(small.to_runner_api().SerializeToString())  # 100x the rows, the same graph


def test_plan_files_round_trip(tmp_path) -> None:
    tasks = _tasks(5_000, 3, seed=4)
    refs = save_plan(tasks, str(tmp_path))
    assert [r.count for r in refs] == [len(t.rows) for t in tasks]
    for task, ref in zip(tasks, refs):
        back = load_task(ref, str(tmp_path))
        assert back.ref == ref
        for a, b in ((back.rows, task.rows), (back.labels, task.labels), (back.row_ids, task.row_ids)):
            assert a.dtype == np.int64 and (a == b).all()


def test_plan_files_keep_explicit_ids(tmp_path) -> None:
    rows = np.array([5, 1, 3], np.int64)
    task = plan.ShardTask("train", 0, 1, "train/x", 0, rows, np.array([2, 0, 1]), np.array([50, 10, 31]))
    back = load_task(save_plan([task], str(tmp_path))[0], str(tmp_path))
    assert back.row_ids.tolist() == [50, 10, 31] and back.rows.tolist() == [5, 1, 3] and back.labels.tolist() == [2, 0, 1]
