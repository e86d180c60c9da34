"""Beam's Dask runner on a real loopback dask.distributed cluster gives the local runner's bytes."""

from __future__ import annotations

import os

import pytest

from bench.plan_scale import DASK_RUNNER, loopback_dask
from conftest import IMAGE_ARGS, array_h5_with_bad_value, run_convert, shard_bytes
from shardkit.spec import read_metadata


@pytest.fixture(scope="module")
def dask_cluster():
    """A scheduler and two single-threaded worker processes on 127.0.0.1; yields the scheduler address."""
    with loopback_dask(workers=2) as address:
        yield address


@pytest.mark.slow
def test_dask_runner_matches_local_runner(knots_h5: str, dask_cluster: str, tmp_path) -> None:
    local = str(tmp_path / "local")
    rc, err = run_convert([knots_h5, "--out", local, *IMAGE_ARGS, "--num-shards", "4", "--workers", "1", "--quiet"])
    assert rc == 0, err
    dask_out = str(tmp_path / "dask")
    rc, err = run_convert([knots_h5, "--out", dask_out, *IMAGE_ARGS, "--num-shards", "4", "--quiet", "--",
                           DASK_RUNNER, f"--dask_client_address={dask_cluster}"])
    assert rc == 0, err
    assert shard_bytes(dask_out) == shard_bytes(local) and len(shard_bytes(local)) == 6
    meta = read_metadata(dask_out)
    assert "DaskRunner" in meta.stats["runner"]
    assert meta.splits == read_metadata(local).splits


@pytest.mark.slow
def test_dask_runner_reports_bad_input(dask_cluster: str, tmp_path) -> None:
    src = array_h5_with_bad_value(str(tmp_path / "inf.h5"), rows=30, cols=4, bad_row=17, bad=float("inf"))
    out = str(tmp_path / "o")
    rc, err = run_convert([src, "--out", out, "--kind", "array", "--data", "/x", "--label", "/y", "--quiet", "--",
                           DASK_RUNNER, f"--dask_client_address={dask_cluster}"])
    assert rc == 1 and "inf.h5" in err and "row 17" in err and not os.path.exists(out)
