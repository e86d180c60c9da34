"""Fault injection: SIGKILL mid-run, unwritable output, file-size limit (disk quota): nothing is published."""

from __future__ import annotations

import glob
import os
import signal
import subprocess
import sys
import time

import pytest

from conftest import IMAGE_ARGS, no_leftovers, random_images_h5, run_convert, shard_bytes
from shardkit.spec import read_metadata

RANDOM_ARGS = ["--kind", "image", "--data", "/x", "--label", "/y", "--image-shape", "32,32,3"]


def _cli(*args: str) -> list[str]:
    return [sys.executable, "-m", "shardkit.convert", *args]


def _started_writing(proc: subprocess.Popen, tmp_path) -> subprocess.Popen:
    """Wait until the conversion of ``tmp_path/ds`` has finished a shard (it is mid-run), then return it."""
    pattern = str(tmp_path / ".ds.shardkit-tmp-*" / "_stats" / "*.json")
    deadline = time.time() + 120
    while not glob.glob(pattern) and proc.poll() is None and time.time() < deadline:
        time.sleep(0.005)
    assert proc.poll() is None, "conversion finished before it could be interrupted"
    return proc


@pytest.mark.slow
def test_sigkill_mid_run_publishes_nothing_and_rerun_is_identical(tmp_path) -> None:
    src = random_images_h5(str(tmp_path / "r.h5"), 12000)
    out = str(tmp_path / "ds")
    argv = [src, "--out", out, *RANDOM_ARGS, "--num-shards", "60", "--workers", "1", "--quiet"]
    proc = _started_writing(subprocess.Popen(_cli(*argv), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL), tmp_path)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert not os.path.exists(out)
    left = glob.glob(str(tmp_path / ".ds.shardkit-tmp-*"))
    assert len(left) == 1 and not os.path.exists(os.path.join(left[0], "metadata.json"))
    with pytest.raises(Exception):
        read_metadata(left[0])

    rc, err = run_convert(argv[:-1])
    assert rc == 0, err
    assert not glob.glob(str(tmp_path / ".ds.shardkit-tmp-*")), "stale temp dir of the killed run not cleaned up"
    clean = str(tmp_path / "clean")
    rc, err = run_convert([src, "--out", clean, *RANDOM_ARGS, "--num-shards", "60", "--workers", "1"])
    assert rc == 0, err
    assert shard_bytes(out) == shard_bytes(clean) and len(shard_bytes(out)) == 60 + 8 + 8


def test_sigterm_mid_run_cleans_up(tmp_path) -> None:
    src = random_images_h5(str(tmp_path / "r.h5"), 12000)
    out = str(tmp_path / "ds")
    proc = _started_writing(subprocess.Popen(_cli(src, "--out", out, *RANDOM_ARGS, "--num-shards", "60", "--workers", "1"),
                                             stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True), tmp_path)
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 143 and "nothing was published" in err
    assert no_leftovers(out)


def test_unwritable_output(knots_h5: str, tmp_path) -> None:
    rc, err = run_convert([knots_h5, "--out", "/proc/shardkit-ds", *IMAGE_ARGS, "--workers", "1"])
    assert rc == 1 and "/proc/shardkit-ds" in err and "nothing was published" in err
    assert not os.path.exists("/proc/shardkit-ds")
    rc, err = run_convert([knots_h5, "--out", str(tmp_path / "missing" / "ds"), *IMAGE_ARGS])
    assert rc == 1 and "does not exist" in err
    if os.geteuid() != 0:
        ro = tmp_path / "ro"
        ro.mkdir()
        ro.chmod(0o555)
        try:
            rc, err = run_convert([knots_h5, "--out", str(ro / "ds"), *IMAGE_ARGS])
            assert rc == 1 and "permission denied" in err.lower() and not os.listdir(ro)
        finally:
            ro.chmod(0o755)


def test_file_size_limit_is_a_clear_error(tmp_path) -> None:
    """Disk quota / full disk simulated with RLIMIT_FSIZE: the worker's write fails with EFBIG."""
    import resource

    src = random_images_h5(str(tmp_path / "r.h5"), 1500)
    out = str(tmp_path / "ds")
    limit = 2 << 20

    def cap() -> None:
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))

    res = subprocess.run(_cli(src, "--out", out, *RANDOM_ARGS, "--num-shards", "1", "--workers", "1", "--quiet"),
                         capture_output=True, text=True, preexec_fn=cap, timeout=300)
    assert res.returncode == 1, res.stderr
    assert "File too large" in res.stderr and "train-00000-of-00001.tfrecord" in res.stderr
    assert "nothing was published" in res.stderr
    assert no_leftovers(out)
