"""Helpers shared by the benchmarks: medians, measured child processes (peak RSS of their process tree), and a
description of the machine the numbers come from."""

from __future__ import annotations

import datetime
import importlib.metadata
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from typing import Any, Sequence

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
RESULT_PREFIX = "BENCH_RESULT "
PACKAGES = ("tensorflow", "tensorflow-cpu", "keras", "apache-beam", "numpy", "h5py", "tables", "jax")


def median(values: Sequence[float]) -> float:
    """Median of the repeats (NaN for none), the statistic every table reports."""
    return float(statistics.median(values)) if values else float("nan")


def tree_rss(pid: int) -> int:
    """Resident bytes of a process and all its descendants (Beam workers, Dask workers...); 0 once it is gone."""
    import psutil

    try:
        proc = psutil.Process(pid)
        return sum(p.memory_info().rss for p in [proc, *proc.children(recursive=True)])
    except (psutil.NoSuchProcess, psutil.AccessDenied):  # a worker ended between listing and reading
        return 0


@dataclass
class Measured:
    """What one measured child process reported (its ``BENCH_RESULT`` line), its wall time and peak tree RSS."""

    result: dict[str, Any]
    wall_s: float
    peak_rss_bytes: int


def run_measured(argv: Sequence[str], timeout: float = 3600, interval: float = 0.05) -> Measured:
    """Run ``argv`` in a fresh process, sampling its tree's RSS every ``interval`` s; raises if it fails."""
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2",
           "PYTHONPATH": os.pathsep.join(filter(None, [REPO, os.environ.get("PYTHONPATH")]))}
    with tempfile.TemporaryFile("w+") as out, tempfile.TemporaryFile("w+") as err:
        start = time.perf_counter()
        proc = subprocess.Popen(list(argv), stdout=out, stderr=err, text=True, env=env, cwd=REPO)
        peak = 0
        while proc.poll() is None:
            peak = max(peak, tree_rss(proc.pid))
            if time.perf_counter() - start > timeout:
                proc.kill()
            time.sleep(interval)
        wall = time.perf_counter() - start
        out.seek(0)
        err.seek(0)
        lines = [line[len(RESULT_PREFIX):] for line in out.read().splitlines() if line.startswith(RESULT_PREFIX)]
        if proc.returncode != 0:
            raise RuntimeError(f"{' '.join(argv)} exited {proc.returncode}:\n{err.read()[-3000:]}")
    return Measured(json.loads(lines[-1]) if lines else {}, wall, peak)


def python_module(module: str, *args: Any) -> list[str]:
    """argv running ``python -m module args`` with this interpreter."""
    return [sys.executable, "-m", module, *map(str, args)]


def child(module: str, *args: Any) -> list[str]:
    """argv running a benchmark module's own worker, ``python -m module --child args``."""
    return python_module(module, "--child", *args)


def emit_result(result: dict[str, Any]) -> None:
    """Print a child's result where :func:`run_measured` finds it."""
    print(RESULT_PREFIX + json.dumps(result), flush=True)


def now_utc() -> str:
    """The current time as the report prints it."""
    return datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")


def _git(*args: str) -> str:
    return subprocess.run(["git", "-C", REPO, *args], capture_output=True, text=True).stdout.strip()


def describe() -> dict[str, Any]:
    """CPU, cores, RAM, OS, Python, library versions, commit, load and time: the report's header."""
    import psutil

    with open("/proc/cpuinfo", encoding="utf-8") as f:
        cpu = next((line.split(":", 1)[1].strip() for line in f if line.startswith("model name")), platform.machine())
    dists = {d.metadata["Name"].lower().replace("_", "-"): d.version for d in importlib.metadata.distributions()}
    return {
        "cpu": cpu,
        "logical_cores": psutil.cpu_count(logical=True),
        "physical_cores": psutil.cpu_count(logical=False),
        "usable_cores": len(os.sched_getaffinity(0)),
        "ram_gib": round(psutil.virtual_memory().total / 2**30, 1),
        "os": f"{platform.system()} {platform.release()}",
        "python": platform.python_version(),
        "packages": {name: dists[name] for name in PACKAGES if name in dists},
        "commit": (_git("rev-parse", "--short", "HEAD") or "unknown")
                  + ("+dirty" if _git("status", "--porcelain", "--untracked-files=no") else ""),
        "load_average_at_start": [round(x, 2) for x in os.getloadavg()],
        "date_utc": now_utc(),
    }
