"""Conversion from a loopback S3 server (moto) vs from local disk: rows/s, peak RSS of every process, and bytes
fetched from the store per byte written. Measured on request (``--only object_store``; moto from the test extra);
docs/benchmarks.md's "Object storage" section quotes one run."""

from __future__ import annotations

import contextlib
import io
import json
import os
import tempfile
from typing import Any, Iterator

from . import conversion, inputs
from .measure import loopback_server, python_module

CREDS = {"aws_access_key_id": "testing", "aws_secret_access_key": "testing", "region_name": "us-east-1"}


@contextlib.contextmanager
def loopback_s3(log_path: str = os.devnull) -> Iterator[tuple[str, int]]:
    """``python -m moto.server`` on 127.0.0.1 on a free port, in its own process; yields (URL, pid)."""
    with loopback_server(lambda port: python_module("moto.server", "-H", "127.0.0.1", "-p", port), "moto server",
                         log_path) as (port, pid):
        yield f"http://127.0.0.1:{port}", pid


def s3_args(url: str) -> list[str]:
    """Beam options after ``--`` pointing its S3 filesystem at ``url``."""
    return [f"--s3_endpoint_url={url}", f"--s3_access_key_id={CREDS['aws_access_key_id']}",
            f"--s3_secret_access_key={CREDS['aws_secret_access_key']}", f"--s3_region_name={CREDS['region_name']}"]


def fetched_per_written(url: str, out: str, args: list[str], beam: list[str]) -> dict[str, Any]:
    """Bytes and range requests the store served for one in-process conversion (``--workers 1``, so every
    read is counted here) per byte of shards written."""
    from shardkit.convert import ranged
    from shardkit.convert.cli import main

    before = dict(ranged.FETCHED)
    with contextlib.redirect_stderr(io.StringIO()):
        rc = main([url, "--out", out, *args, "--workers", "1", "--quiet", "--", *beam])
    assert rc == 0
    written = sum(os.path.getsize(os.path.join(r, f)) for r, _, fs in os.walk(out) for f in fs
                  if ".tfrecord" in f)
    fetched = ranged.FETCHED["bytes"] - before["bytes"]
    return {"fetched_bytes": fetched, "requests": ranged.FETCHED["requests"] - before["requests"],
            "written_bytes": written, "fetched_per_written": round(fetched / written, 3)}


def measure(cache: str, per_class: int, size: int, shard_counts: list[int]) -> dict[str, Any]:
    """Bytes fetched per byte written for each of ``shard_counts``, then three 2-worker conversions timed (wall,
    write phase, each process's peak RSS): local -> local, S3 -> local and S3 -> S3, of ``3 * per_class`` knot
    images of ``size`` pixels a side (in a temporary folder under ``cache``)."""
    import boto3

    rows = 3 * per_class
    with tempfile.TemporaryDirectory(prefix="s3-bench-", dir=cache) as tmp, loopback_s3() as (url, server_pid):
        src = inputs.source(tmp, "knots", rows, size)
        args = [*inputs.ARGS["knots"], "--image-shape", f"{size},{size},3"]
        result: dict[str, Any] = {"rows": rows, "row_bytes": size * size * 3, "file_bytes": os.path.getsize(src),
                                  "load_average": os.getloadavg()}
        client = boto3.client("s3", endpoint_url=url, **CREDS)
        client.create_bucket(Bucket="bench")
        client.upload_file(src, "bench", "knots.h5")
        for shards in shard_counts:
            result[f"ranges_{shards}_shards"] = fetched_per_written(
                "s3://bench/knots.h5", os.path.join(tmp, f"ranges-{shards}"), [*args, "--num-shards", str(shards)],
                s3_args(url))
        common = [*args, "--num-shards", str(shard_counts[0]), "--workers", "2", "--quiet"]
        for name, (source, out, beam) in {"local disk -> local disk": (src, os.path.join(tmp, "local"), []),
                                          "S3 -> local disk": ("s3://bench/knots.h5", os.path.join(tmp, "from-s3"),
                                                               ["--", *s3_args(url)]),
                                          "S3 -> S3": ("s3://bench/knots.h5", "s3://bench/out", ["--", *s3_args(url)])
                                          }.items():
            run = conversion.convert([source, "--out", out, *common, *beam], {server_pid: "moto S3 server"})
            meta = json.loads(client.get_object(Bucket="bench", Key="out/metadata.json")["Body"].read()
                              if out.startswith("s3://") else open(os.path.join(out, "metadata.json")).read())
            phase = meta["stats"]["write_phase_seconds"]
            wall = round(run.wall_s, 2)
            result[name] = {"wall_s": wall,
                            "peak_rss_mb": sorted((n, round(rss / 2**20)) for n, rss in run.peaks.values()),
                            "rows_per_s": round(rows / wall, 1), "write_phase_s": phase,
                            "write_phase_rows_per_s": round(rows / max(phase, 1e-9), 1)}
    return result
