"""Conversion at row scale: millions of small rows, the driver's memory, the job graph, and Dask's bytes.

One input of ``rows`` rows, each a float32 vector of 4 values and one of 7 class labels; converted once on
the local FnApiRunner and once on Beam's Dask runner over a loopback dask.distributed cluster.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import sys
from pathlib import Path
from typing import Any, Iterator

from bench import inputs
from bench.measure import background, loopback_server, python_module, run_measured

DASK_RUNNER = "--runner=apache_beam.runners.dask.dask_runner.DaskRunner"
_CONVERT = ("import json, resource, sys; from shardkit.convert.cli import main; rc = main(sys.argv[1:]); "
            "print('BENCH_RESULT ' + json.dumps({'rc': rc, 'driver_rss_bytes': "
            "resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024})); sys.exit(rc)")


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
    args = [src, "--out", out, "--kind", "array", "--data", "/x", "--label", "/y", "--quiet"]
    if beam_args:
        args += ["--", *beam_args]
    run = run_measured([sys.executable, "-c", _CONVERT, *args])
    return {"seconds": run.wall_s, "driver_peak_rss_bytes": run.result["driver_rss_bytes"],
            "all_processes_peak_rss_bytes": run.peak_rss_bytes}


def shard_digests(dataset: str) -> dict[str, str]:
    """SHA-256 of every shard file of ``dataset``, by path."""
    from shardkit.spec import read_metadata

    shards = [sh.path for split in read_metadata(dataset).splits.values() for sh in split.shards]
    return {path: hashlib.sha256(Path(dataset, path).read_bytes()).hexdigest() for path in shards}


@contextlib.contextmanager
def loopback_dask(workers: int = 2) -> Iterator[str]:
    """A dask.distributed scheduler and ``workers`` single-threaded workers on 127.0.0.1; yields its address
    and stops every process on exit."""
    from distributed import Client

    def scheduler(port: int) -> list[str]:
        return python_module("distributed.cli.dask_scheduler", "--host", "127.0.0.1", "--port", port, "--no-dashboard")

    with loopback_server(scheduler, "dask scheduler") as (port, _):
        address = f"tcp://127.0.0.1:{port}"
        with background(python_module("distributed.cli.dask_worker", address, "--nworkers", workers, "--nthreads", 1,
                                      "--no-dashboard", "--host", "127.0.0.1")):
            with Client(address, timeout=60) as client:
                client.wait_for_workers(workers, timeout=60)
            yield address


def measure(cache: str, rows: int, dask: bool = True) -> dict[str, Any]:
    """The row-scale section: job graph size, local conversion, and (``dask``) the Dask runner's bytes."""
    import shutil

    os.makedirs(cache, exist_ok=True)
    src = inputs.source(cache, "rows", rows)  # float32 (4,) rows, labels sorted by class
    work = os.path.join(cache, "plan-scale-out")
    shutil.rmtree(work, ignore_errors=True)
    os.makedirs(work)
    graph, shards = job_graph_bytes(src, os.path.join(work, "graph"))
    local = convert(src, os.path.join(work, "local"))
    result: dict[str, Any] = {"rows": rows, "shards": shards, "job_graph_bytes": graph, "local": local,
                              "rows_per_second": rows / local["seconds"]}
    if dask:
        with loopback_dask() as address:
            result["dask"] = convert(src, os.path.join(work, "dask"), (DASK_RUNNER, f"--dask_client_address={address}"))
        result["dask_bytes_identical"] = shard_digests(os.path.join(work, "dask")) == shard_digests(os.path.join(work, "local"))
    shutil.rmtree(work, ignore_errors=True)
    return result
