"""open_dataset: a missing shard and a truncated one are told apart by what is on disk, not by message text."""

from __future__ import annotations

import os
import re
import shutil
from pathlib import Path

import pytest

from shardkit.spec import DatasetError
from shardkit.train import dataset as reader

from datasets import knots_dataset, record_offsets


@pytest.fixture(scope="module")
def knots(tmp_path_factory: pytest.TempPathFactory) -> str:
    return knots_dataset(tmp_path_factory, n_per_class=20, size=24, num_shards=2)


def test_skip_corrupt_counts_a_missing_shard_as_lost_and_a_truncated_one_by_its_prefix(knots: str, tmp_path: Path) -> None:
    dataset = shutil.copytree(knots, tmp_path / "ds")
    meta = reader.open_dataset(str(dataset)).metadata
    gone, cut = meta.shard_paths(str(dataset), "train")
    counts = [s.count for s in meta.splits["train"].shards]
    os.remove(gone)
    offset, length = record_offsets(cut)[3]
    os.truncate(cut, offset + 12 + length // 2)  # records 0-2 stay whole

    with pytest.raises(DatasetError, match=f"^{re.escape(gone)}: shard is missing"):
        reader.open_dataset(str(dataset))
    ds = reader.open_dataset(str(dataset), skip_corrupt=True)
    assert ds.counts["train"] == (0, 3)
    assert ds.lost == {gone: counts[0], cut: counts[1] - 3}
