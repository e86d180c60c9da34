"""Conversion from a loopback S3 server (moto) vs from local disk: rows/s, peak RSS of every process, and
bytes fetched from the store per byte written.

A ``run_all`` section measured on request (``python -m bench.run_all --only object_store``): it needs the
moto server from the test extra. docs/benchmarks.md's "Object storage" section quotes one run.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import socket
import subprocess
import sys
import tempfile
import threading
import time
from typing import Any, Callable, Iterator

CREDS = {"aws_access_key_id": "testing", "aws_secret_access_key": "testing", "region_name": "us-east-1"}


@contextlib.contextmanager
def loopback_server(argv: Callable[[int], list[str]], what: str, log_path: str = os.devnull) -> Iterator[tuple[int, int]]:
    """Run ``argv(port)`` on a free 127.0.0.1 port until it accepts connections; yields (port, pid) and stops
    the process on exit."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    with open(log_path, "wb") as log:
        proc = subprocess.Popen(argv(port), stdout=log, stderr=subprocess.STDOUT)
        try:
            deadline = time.time() + 60
            while True:
                try:
                    with socket.create_connection(("127.0.0.1", port), timeout=1):
                        break
                except OSError:
                    if proc.poll() is not None or time.time() > deadline:
                        raise RuntimeError(f"{what} did not start (exit {proc.poll()})") from None
                    time.sleep(0.2)
            yield port, proc.pid
        finally:
            proc.terminate()
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


@contextlib.contextmanager
def loopback_s3(log_path: str = os.devnull) -> Iterator[tuple[str, int]]:
    """``python -m moto.server`` on 127.0.0.1 on a free port, in its own process; yields (URL, pid)."""
    argv = lambda port: [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)]  # noqa: E731
    with loopback_server(argv, "moto server", log_path) as (port, pid):
        yield f"http://127.0.0.1:{port}", pid


def s3_args(url: str) -> list[str]:
    """Beam options after ``--`` pointing its S3 filesystem at ``url``."""
    return [f"--s3_endpoint_url={url}", f"--s3_access_key_id={CREDS['aws_access_key_id']}",
            f"--s3_secret_access_key={CREDS['aws_secret_access_key']}", f"--s3_region_name={CREDS['region_name']}"]


class ProcessPeaks:
    """Peak RSS of each process in a tree (and of extra pids), sampled every ``interval`` seconds."""

    def __init__(self, root: int, extra: dict[int, str], interval: float = 0.05) -> None:
        import psutil

        self.root, self.extra, self.interval = psutil.Process(root), extra, interval
        self.peaks: dict[int, tuple[str, int]] = {}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _name(self, p: Any) -> str:
        if p.pid in self.extra:
            return self.extra[p.pid]
        if p.pid == self.root.pid:
            return "driver (shardkit-convert)"
        cmd = " ".join(p.cmdline())
        return "Beam worker" if "worker" in cmd else cmd[:60]

    def _run(self) -> None:
        import psutil

        while not self._stop.is_set():
            try:
                procs = [self.root, *self.root.children(recursive=True)]
            except psutil.NoSuchProcess:
                procs = []
            procs += [psutil.Process(pid) for pid in self.extra]
            for p in procs:
                try:
                    rss = p.memory_info().rss
                    name = self.peaks.get(p.pid, (None, 0))[0] or self._name(p)
                    self.peaks[p.pid] = (name, max(rss, self.peaks.get(p.pid, ("", 0))[1]))
                except (psutil.NoSuchProcess, psutil.AccessDenied):
                    pass
            self._stop.wait(self.interval)

    def __enter__(self) -> "ProcessPeaks":
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()


def run_convert(argv: list[str], extra: dict[int, str]) -> dict[str, Any]:
    """One conversion in a fresh process: wall seconds and each process's peak RSS."""
    start = time.perf_counter()
    proc = subprocess.Popen([sys.executable, "-m", "shardkit.convert", *argv], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    with ProcessPeaks(proc.pid, extra) as peaks:
        _, err = proc.communicate()
    if proc.returncode:
        raise RuntimeError(err[-2000:])
    return {"wall_s": round(time.perf_counter() - start, 2),
            "peak_rss_mb": sorted((name, round(rss / 2**20)) for name, rss in peaks.peaks.values())}


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


def measure(per_class: int, size: int, shard_counts: list[int]) -> dict[str, Any]:
    import boto3

    from shardkit.convert.examples import write_knots

    tmp = tempfile.mkdtemp(prefix="shardkit-s3-bench-")
    src = write_knots(os.path.join(tmp, "knots.h5"), per_class, size=size, seed=0)
    args = ["--kind", "image", "--data", "/train_data", "--label", "/train_label", "--image-shape",
            f"{size},{size},3"]
    rows = 3 * per_class
    result: dict[str, Any] = {"rows": rows, "row_bytes": size * size * 3, "file_bytes": os.path.getsize(src),
                              "load_average": os.getloadavg()}
    with loopback_s3() as (url, server_pid):
        client = boto3.client("s3", endpoint_url=url, **CREDS)
        client.create_bucket(Bucket="bench")
        client.upload_file(src, "bench", "knots.h5")
        for shards in shard_counts:
            result[f"ranges_{shards}_shards"] = fetched_per_written(
                "s3://bench/knots.h5", os.path.join(tmp, f"ranges-{shards}"), [*args, "--num-shards", str(shards)],
                s3_args(url))
        common = [*args, "--num-shards", str(shard_counts[0]), "--workers", "2", "--quiet"]
        runs = {"local disk -> local disk": [src, "--out", os.path.join(tmp, "local"), *common],
                "S3 -> local disk": ["s3://bench/knots.h5", "--out", os.path.join(tmp, "from-s3"), *common, "--",
                                     *s3_args(url)],
                "S3 -> S3": ["s3://bench/knots.h5", "--out", "s3://bench/out", *common, "--", *s3_args(url)]}
        for name, argv in runs.items():
            r = run_convert(argv, {server_pid: "moto S3 server"})
            r["rows_per_s"] = round(rows / r["wall_s"], 1)
            out = argv[argv.index("--out") + 1]
            meta = json.loads(client.get_object(Bucket="bench", Key="out/metadata.json")["Body"].read()
                              if out.startswith("s3://") else open(os.path.join(out, "metadata.json")).read())
            r["write_phase_s"] = meta["stats"]["write_phase_seconds"]
            r["write_phase_rows_per_s"] = round(rows / max(r["write_phase_s"], 1e-9), 1)
            result[name] = r
    return result
