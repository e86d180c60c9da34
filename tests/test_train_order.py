"""Each epoch's order is new: consecutive epochs neither keep positions nor keep batch-mates together."""

from __future__ import annotations

import numpy as np
import pytest

from bench.order import order_metrics, two_epochs
from datasets import knots_dataset

# Stated bounds, for a shuffle buffer of about 1/20 of the training data (the default 32 MB buffer against
# a dataset of 640 MB): position correlation at most 0.1 (0 for a fresh permutation) and batch-mates meeting
# again at most 1.5x as often as under a fresh permutation.
MAX_CORRELATION = 0.1
MAX_COOCCURRENCE = 1.5


def test_order_metrics_on_known_orders() -> None:
    ids = np.arange(6400)
    same = order_metrics(ids, ids, 64)
    assert same["position_correlation"] == pytest.approx(1.0) and same["cooccurrence"] == 1.0
    fresh = order_metrics(ids, np.random.default_rng(0).permutation(ids), 64)
    assert abs(fresh["position_correlation"]) < 0.05 and 0.8 < fresh["cooccurrence_vs_fresh"] < 1.2


def test_default_shards_give_a_fresh_order_every_epoch(tmp_path_factory) -> None:
    """The converter's default sharding (at least 64 train shards) against the 5 shards a size-based rule
    gave a dataset of this many rows: the bound holds for the first and fails for the second."""
    default = knots_dataset(tmp_path_factory, n_per_class=700, size=16, num_shards=0)
    few = knots_dataset(tmp_path_factory, n_per_class=700, size=16, num_shards=5)
    buffer_mb = 1680 * 16 * 16 * 3 / 20 / 1e6  # 1/20 of the 1,680 training rows
    good = order_metrics(*two_epochs(default, 64, shuffle_buffer_mb=buffer_mb), 64)
    bad = order_metrics(*two_epochs(few, 64, shuffle_buffer_mb=buffer_mb), 64)
    assert good["position_correlation"] <= MAX_CORRELATION and good["cooccurrence_vs_fresh"] <= MAX_COOCCURRENCE, good
    assert bad["position_correlation"] > 0.5 and bad["cooccurrence_vs_fresh"] > 2, bad
