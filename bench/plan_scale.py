"""Conversion at row scale: ``rows`` float32 (4,) rows of 7 classes converted on the local runner and on Beam's
Dask runner over a loopback dask.distributed cluster: the job graph's size, the driver's memory, Dask's bytes."""

from __future__ import annotations

import contextlib
import hashlib
import os
import shutil
from pathlib import Path
from typing import Any, Iterator

from shardkit.spec import read_metadata

from bench import conversion, inputs
from bench.measure import background, loopback_server, python_module

DASK_RUNNER = "--runner=apache_beam.runners.dask.dask_runner.DaskRunner"


def job_graph_bytes(src: str, out: str) -> tuple[int, int]:
    """(serialised pipeline proto bytes, shards) of the job the converter would submit for ``src``."""
    import apache_beam as beam

    from shardkit.convert.pipeline import ConvertConfig, prepare
    from shardkit.convert.runner import build_job

    prep = prepare(ConvertConfig(inputs=(src,), out=out, kind="array", data="/x", label="/y"))
    p = beam.Pipeline()
    build_job(p, prep.refs, prep.encode_config(out + ".tmp"))  # what the converter itself submits
    return len(p.to_runner_api().SerializeToString()), len(prep.refs)


def convert(src: str, out: str, beam_args: tuple[str, ...] = ()) -> dict[str, Any]:
    """Run shardkit-convert on ``src``; wall time, driver peak RSS and all-process peak RSS."""
    run = conversion.convert([src, "--out", out, "--kind", "array", "--data", "/x", "--label", "/y", "--quiet",
                              *(("--", *beam_args) if beam_args else ())])
    return {"seconds": run.wall_s, "driver_peak_rss_bytes": run.result["driver_rss_bytes"],
            "all_processes_peak_rss_bytes": run.peak_rss_bytes}


def shard_digests(dataset: str) -> dict[str, str]:
    """SHA-256 of every shard file of ``dataset``, by path."""
    shards = [sh.path for split in read_metadata(dataset).splits.values() for sh in split.shards]
    return {path: hashlib.sha256(Path(dataset, path).read_bytes()).hexdigest() for path in shards}


@contextlib.contextmanager
def loopback_dask(workers: int = 2) -> Iterator[str]:
    """A dask.distributed scheduler and ``workers`` single-threaded workers on 127.0.0.1; yields its address
    and stops every process on exit."""
    from distributed import Client

    scheduler = ("distributed.cli.dask_scheduler", "--host", "127.0.0.1", "--no-dashboard", "--port")
    with loopback_server(lambda port: python_module(*scheduler, port), "dask scheduler") as (port, _):
        address = f"tcp://127.0.0.1:{port}"
        with background(python_module("distributed.cli.dask_worker", address, "--nworkers", workers, "--nthreads", 1,
                                      "--no-dashboard", "--host", "127.0.0.1")):
            with Client(address, timeout=60) as client:
                client.wait_for_workers(workers, timeout=60)
            yield address


def measure(cache: str, rows: int, dask: bool = True) -> dict[str, Any]:
    """The row-scale section: job graph size, local conversion, and (``dask``) the Dask runner's bytes."""
    src = inputs.source(cache, "rows", rows)  # float32 (4,) rows, labels sorted by class
    work = os.path.join(cache, "plan-scale-out")
    shutil.rmtree(work, ignore_errors=True)
    os.makedirs(work)
    graph, shards = job_graph_bytes(src, os.path.join(work, "graph"))
    local = convert(src, local_out := os.path.join(work, "local"))
    result: dict[str, Any] = {"rows": rows, "shards": shards, "job_graph_bytes": graph, "local": local,
                              "rows_per_second": rows / local["seconds"]}
    if dask:
        with loopback_dask() as address:
            result["dask"] = convert(src, os.path.join(work, "dask"), (DASK_RUNNER, f"--dask_client_address={address}"))
        result["dask_bytes_identical"] = shard_digests(os.path.join(work, "dask")) == shard_digests(local_out)
    shutil.rmtree(work, ignore_errors=True)
    return result
