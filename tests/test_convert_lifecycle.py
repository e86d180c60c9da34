"""The converter as a process: Ctrl-C stops it with one clean line, and its Beam worker processes never
outlive it, even after a SIGKILL."""

from __future__ import annotations

import glob
import os
import signal
import subprocess
import sys
import time

import psutil
import pytest

from conftest import no_leftovers, random_images_h5

ARGS = ["--kind", "image", "--data", "/x", "--label", "/y", "--image-shape", "32,32,3", "--workers", "2"]


def _start(tmp_path, rows: int, *extra: str, writing: bool = True) -> tuple[subprocess.Popen, list[psutil.Process]]:
    """Start a conversion in its own process group (as a terminal would) and return it with its two worker
    processes, once they exist (and, with ``writing``, once they have started writing shards)."""
    src = random_images_h5(str(tmp_path / "r.h5"), rows)
    proc = subprocess.Popen([sys.executable, "-m", "shardkit.convert", src, "--out", str(tmp_path / "ds"), *ARGS,
                             *extra], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            start_new_session=True)
    pattern = str(tmp_path / ".ds.shardkit-tmp-*" / "*" / "*.inprogress-*")
    deadline = time.time() + 120
    workers: list[psutil.Process] = []
    while proc.poll() is None and time.time() < deadline:
        workers = [p for p in psutil.Process(proc.pid).children(recursive=True) if _is_worker(p)]
        if len(workers) == 2 and (not writing or glob.glob(pattern)):
            break
        time.sleep(0.01)
    assert proc.poll() is None, "conversion finished before it could be stopped"
    assert len(workers) == 2, workers
    return proc, workers


def _is_worker(p: psutil.Process) -> bool:
    try:
        return "shardkit.convert.worker" in " ".join(p.cmdline())
    except psutil.NoSuchProcess:  # a short-lived child that has already gone
        return False


def _alive(procs: list[psutil.Process]) -> list[psutil.Process]:
    out = []
    for p in procs:
        try:
            if p.is_running() and p.status() != psutil.STATUS_ZOMBIE:
                out.append(p)
        except psutil.NoSuchProcess:
            pass
    return out


def test_ctrl_c_prints_one_clean_line(tmp_path) -> None:
    proc, workers = _start(tmp_path, 6000, "--num-shards", "30")
    os.killpg(proc.pid, signal.SIGINT)  # Ctrl-C reaches the whole foreground process group, workers included
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 130
    assert "Traceback" not in err and not out
    lines = [ln for ln in err.splitlines() if "rows/s" not in ln]  # progress lines may precede it
    assert lines == ["shardkit-convert: interrupted; nothing was published"], err
    assert no_leftovers(str(tmp_path / "ds"))
    deadline = time.time() + 10
    while _alive(workers) and time.time() < deadline:
        time.sleep(0.1)
    assert not _alive(workers)


def test_sigkill_leaves_no_worker_processes(tmp_path) -> None:
    # killed while its workers start up: Beam's bare workers then wait for the dead converter for minutes
    proc, workers = _start(tmp_path, 300, "--num-shards", "4", writing=False)
    time.sleep(0.3)
    proc.kill()
    proc.wait()
    deadline = time.time() + 3
    while _alive(workers) and time.time() < deadline:
        time.sleep(0.05)
    left = _alive(workers)
    for p in left:
        p.kill()
    assert not left, f"worker processes outlived their converter: {[p.pid for p in left]}"
    assert not os.path.exists(tmp_path / "ds")


def test_a_signal_a_library_swallowed_still_publishes_nothing(tmp_path) -> None:
    # Ctrl-C while Beam waits on its workers can raise inside code that catches it; the recorded signal decides
    from shardkit.convert import errors
    from shardkit.convert.pipeline import ConvertConfig, convert

    src = random_images_h5(str(tmp_path / "r.h5"), 60)
    cfg = ConvertConfig(inputs=(src,), out=str(tmp_path / "ds"), kind="image", data="/x", label="/y",
                        image_shape=(32, 32, 3), workers=1, progress=False)
    errors.SIGNALS.append(signal.SIGINT)
    try:
        with pytest.raises(KeyboardInterrupt):
            convert(cfg)
    finally:
        errors.SIGNALS.clear()
    assert not os.path.exists(tmp_path / "ds")
    assert no_leftovers(str(tmp_path / "ds"))
    convert(cfg)  # with no signal recorded the same conversion publishes
    assert os.path.exists(tmp_path / "ds" / "metadata.json")
