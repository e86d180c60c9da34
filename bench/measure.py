"""Timing and memory helpers shared by the benchmarks: medians of repeats, peak RSS of a process tree."""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
import threading
import time
from dataclasses import dataclass
from typing import Any, Sequence

import psutil

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
RESULT_PREFIX = "BENCH_RESULT "


def median(values: Sequence[float]) -> float:
    """Median of the repeats (NaN for none), the statistic every table reports."""
    return float(statistics.median(values)) if values else float("nan")


def tree_rss(proc: psutil.Process) -> int:
    """Resident bytes of a process and all its descendants (Beam workers, Dask workers...)."""
    total = 0
    try:
        procs = [proc, *proc.children(recursive=True)]
    except psutil.NoSuchProcess:
        return 0
    for p in procs:
        try:
            total += p.memory_info().rss
        except (psutil.NoSuchProcess, psutil.AccessDenied):
            pass
    return total


class RssSampler:
    """Samples the summed RSS of a process tree in a thread; ``peak`` is the largest sum seen."""

    def __init__(self, pid: int, interval: float = 0.05):
        self.proc = psutil.Process(pid)
        self.interval = interval
        self.peak = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            self.peak = max(self.peak, tree_rss(self.proc))
            self._stop.wait(self.interval)

    def __enter__(self) -> "RssSampler":
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()


@dataclass
class SubprocessResult:
    """What one measured child process reported, with its wall time and peak tree RSS."""

    result: dict[str, Any]
    wall_s: float
    peak_rss_bytes: int
    returncode: int
    stderr_tail: str


def run_measured(argv: Sequence[str], env: dict[str, str] | None = None, timeout: float = 3600,
                 interval: float = 0.05) -> SubprocessResult:
    """Run ``argv`` in a fresh process, sampling its tree's RSS; parse the JSON line it prints after
    ``BENCH_RESULT `` (see :func:`emit_result`). Raises with the child's stderr tail if it fails."""
    full_env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2", "PYTHONPATH": _pythonpath(), **(env or {})}
    start = time.perf_counter()
    proc = subprocess.Popen(list(argv), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=full_env,
                            cwd=REPO)
    with RssSampler(proc.pid, interval) as sampler:
        try:
            out, err = proc.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            out, err = proc.communicate()
    wall = time.perf_counter() - start
    result: dict[str, Any] = {}
    for line in out.splitlines():
        if line.startswith(RESULT_PREFIX):
            result = json.loads(line[len(RESULT_PREFIX):])
    if proc.returncode != 0:
        raise RuntimeError(f"{' '.join(argv)} exited {proc.returncode}:\n{err[-3000:]}")
    return SubprocessResult(result, wall, sampler.peak, proc.returncode, err[-2000:])


def python_module(module: str, *args: str) -> list[str]:
    """argv running ``python -m module args`` with this interpreter."""
    return [sys.executable, "-m", module, *args]


def emit_result(result: dict[str, Any]) -> None:
    """Print a child's result where :func:`run_measured` finds it."""
    print(RESULT_PREFIX + json.dumps(result), flush=True)


def _pythonpath() -> str:
    parts = [REPO, *filter(None, os.environ.get("PYTHONPATH", "").split(os.pathsep))]
    return os.pathsep.join(dict.fromkeys(parts))
