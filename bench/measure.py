"""Helpers shared by the benchmarks: medians, measured child processes (peak RSS of their tree and of each process),
loopback servers for the length of a ``with`` block, and a description of the machine."""

from __future__ import annotations

import contextlib
import datetime
import importlib
import importlib.metadata
import json
import os
import platform
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from typing import Any, Callable, Iterator, Sequence

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
RESULT_PREFIX = "BENCH_RESULT "
PACKAGES = ("tensorflow", "tensorflow-cpu", "keras", "apache-beam", "numpy", "h5py", "tables", "jax")


def median(values: Sequence[float]) -> float:
    """Median of the repeats (NaN for none), the statistic every table reports."""
    return float(statistics.median(values)) if values else float("nan")


def round_robin(passes: dict[str, Callable[[], Any]], rounds: int) -> dict[str, list[Any]]:
    """Each pass's results over ``rounds`` rounds, the passes taking turns so that the box's load hits all alike."""
    results: dict[str, list[Any]] = {name: [] for name in passes}
    for _ in range(rounds):
        for name, fn in passes.items():
            results[name].append(fn())
    return results


@dataclass
class Measured:
    """A child's ``BENCH_RESULT`` line, its wall time, the peak RSS of its process tree, and each watched
    process's own peak as (name, bytes) by pid."""

    result: dict[str, Any]
    wall_s: float
    peak_rss_bytes: int
    peaks: dict[int, tuple[str, int]]


def _name(p: Any, root: int, extra: dict[int, str]) -> str:
    if p.pid in extra or p.pid == root:
        return extra.get(p.pid, "driver (shardkit-convert)")
    cmd = " ".join(p.cmdline())
    return "Beam worker" if "worker" in cmd else cmd[:60]


def run_measured(argv: Sequence[str], extra: dict[int, str] | None = None) -> Measured:
    """Run ``argv`` in a fresh process, sampling the RSS of its tree (and of the ``extra`` pids, by name) every
    50 ms (killed after an hour); raises if it fails."""
    import psutil

    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2",
           "PYTHONPATH": os.pathsep.join(filter(None, [REPO, os.environ.get("PYTHONPATH")]))}
    extra, peaks, peak = extra or {}, {}, 0
    with tempfile.TemporaryFile("w+") as out, tempfile.TemporaryFile("w+") as err:
        start = time.perf_counter()
        proc = subprocess.Popen(list(argv), stdout=out, stderr=err, text=True, env=env, cwd=REPO)
        root = psutil.Process(proc.pid)
        while proc.poll() is None:
            tree = 0
            with contextlib.suppress(psutil.NoSuchProcess):
                for p in [root, *root.children(recursive=True), *map(psutil.Process, extra)]:
                    try:  # a worker may end between listing and reading
                        rss, (name, top) = p.memory_info().rss, peaks.get(p.pid) or (_name(p, proc.pid, extra), 0)
                    except (psutil.NoSuchProcess, psutil.AccessDenied):
                        continue
                    peaks[p.pid] = (name, max(top, rss))
                    tree += 0 if p.pid in extra else rss
            peak = max(peak, tree)
            if time.perf_counter() - start > 3600:
                proc.kill()
            time.sleep(0.05)
        wall = time.perf_counter() - start
        out.seek(0)
        err.seek(0)
        lines = [line[len(RESULT_PREFIX):] for line in out.read().splitlines() if line.startswith(RESULT_PREFIX)]
        if proc.returncode != 0:
            raise RuntimeError(f"{' '.join(argv)} exited {proc.returncode}:\n{err.read()[-3000:]}")
    return Measured(json.loads(lines[-1]) if lines else {}, wall, peak, peaks)


@contextlib.contextmanager
def background(argv: Sequence[str], log_path: str = os.devnull) -> Iterator[subprocess.Popen]:
    """Run ``argv`` in its own process group for the ``with`` block; the whole group is stopped on exit."""
    with open(log_path, "wb") as log:
        proc = subprocess.Popen(list(argv), stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        try:
            yield proc
        finally:
            os.killpg(proc.pid, signal.SIGTERM)
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()


@contextlib.contextmanager
def loopback_server(argv: Callable[[int], list[str]], what: str,
                    log_path: str = os.devnull) -> Iterator[tuple[int, int]]:
    """Run ``argv(port)`` on a free 127.0.0.1 port until it accepts connections; yields (port, pid)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    with background(argv(port), log_path) as proc:
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


def python_module(module: str, *args: Any) -> list[str]:
    """argv running ``python -m module args`` with this interpreter."""
    return [sys.executable, "-m", module, *map(str, args)]


def child(fn: Callable[..., dict[str, Any] | None], *args: Any) -> list[str]:
    """argv calling the bench function ``fn(*args)`` (arguments JSON can carry) in a fresh process, where what it
    returns is printed as the result :func:`run_measured` reads."""
    return python_module("bench.measure", f"{fn.__module__}:{fn.__name__}", json.dumps(args))


def now_utc() -> str:
    return datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")


def timed(fn: Callable[..., Any], *args: Any, **kwargs: Any) -> float:
    """Seconds ``fn(*args, **kwargs)`` takes."""
    start = time.perf_counter()
    fn(*args, **kwargs)
    return time.perf_counter() - start


def describe() -> dict[str, Any]:
    """CPU, cores, RAM, OS, Python, library versions, commit, load and time: the report's header."""
    import psutil

    def git(*args: str) -> str:
        return subprocess.run(["git", "-C", REPO, *args], capture_output=True, text=True).stdout.strip()

    with open("/proc/cpuinfo", encoding="utf-8") as f:
        cpu = next((line.split(":", 1)[1].strip() for line in f if line.startswith("model name")), platform.machine())
    dists = {d.metadata["Name"].lower().replace("_", "-"): d.version for d in importlib.metadata.distributions()}
    return {
        "cpu": cpu, "logical_cores": psutil.cpu_count(logical=True), "physical_cores": psutil.cpu_count(logical=False),
        "usable_cores": len(os.sched_getaffinity(0)), "ram_gib": round(psutil.virtual_memory().total / 2**30, 1),
        "os": f"{platform.system()} {platform.release()}", "python": platform.python_version(),
        "packages": {name: dists[name] for name in PACKAGES if name in dists},
        "commit": (git("rev-parse", "--short", "HEAD") or "unknown")
                  + ("+dirty" if git("status", "--porcelain", "--untracked-files=no") else ""),
        "load_average_at_start": [round(x, 2) for x in os.getloadavg()], "date_utc": now_utc(),
    }


if __name__ == "__main__":  # a child started by ``child``
    module, name = sys.argv[1].split(":")
    result = getattr(importlib.import_module(module), name)(*json.loads(sys.argv[2]))
    print(RESULT_PREFIX + json.dumps(result or {}), flush=True)
