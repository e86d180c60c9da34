"""What the converter refuses or warns about, in one line: --overwrite over foreign files, stale temp dirs on
shared storage, degenerate data and settings, bad Beam options, noisy output, sequence letter counts."""

from __future__ import annotations

import os
import subprocess
import sys

import numpy as np
import pandas as pd
import pytest
import tables

from conftest import IMAGE_ARGS, no_leftovers, run_convert
from test_convert_remote import mounted  # noqa: F401 - the fixture: a URL scheme only Beam's FileSystems know
from shardkit.convert import examples, publish
from shardkit.convert.encoders import SequenceEncoder
from shardkit.convert.errors import InputError, PublishError
from shardkit.convert.runner import check_beam_args
from shardkit.spec import read_metadata

ARRAY = ["--kind", "array", "--data", "/x", "--label", "/y", "--workers", "1"]


def _cli(*args: str, timeout: float = 120) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "shardkit.convert", *args], capture_output=True, text=True,
                          timeout=timeout)


def _tree(root: str) -> dict[str, bytes | None]:
    """Every file (bytes) and folder (None) under ``root``."""
    out: dict[str, bytes | None] = {}
    for d, dirs, files in os.walk(root):
        for n in dirs:
            out[os.path.relpath(os.path.join(d, n), root)] = None
        for n in files:
            with open(os.path.join(d, n), "rb") as f:
                out[os.path.relpath(os.path.join(d, n), root)] = f.read()
    return out


def _h5(path: str, labels: np.ndarray) -> str:
    with tables.open_file(path, "w") as f:
        f.create_array("/", "x", np.arange(len(labels) * 3, dtype=np.float32).reshape(-1, 3))
        f.create_array("/", "y", labels)
    return path


def _one_error_line(res: subprocess.CompletedProcess) -> str:
    lines = [ln for ln in (res.stdout + res.stderr).splitlines() if ln.strip()]
    assert len(lines) == 1 and "Traceback" not in res.stderr, res.stdout + res.stderr
    return lines[0]


# --overwrite replaces only the dataset


def test_overwrite_refuses_foreign_files_and_changes_nothing(knots_h5: str, tmp_path) -> None:
    out = str(tmp_path / "ds")
    argv = [knots_h5, "--out", out, *IMAGE_ARGS, "--num-shards", "2", "--workers", "1"]
    rc, err = run_convert(argv)
    assert rc == 0, err
    (tmp_path / "ds" / "NOTES.txt").write_text("my notes")
    (tmp_path / "ds" / "runs" / "r1").mkdir(parents=True)
    (tmp_path / "ds" / "runs" / "r1" / "model.keras").write_bytes(b"weights")
    (tmp_path / "ds" / "train" / "extra.tfrecord").write_bytes(b"mine")
    before = _tree(out)

    rc, err = run_convert([*argv, "--seed", "3", "--overwrite"])
    assert rc == 1
    line = err.splitlines()[0]
    assert line == (f"shardkit-convert: error: {out}: holds NOTES.txt, runs/, train/extra.tfrecord, which are not "
                    f"part of the dataset; --overwrite replaces only a dataset: move them out of {out} or choose "
                    "another --out")
    assert _tree(out) == before
    assert not [e for e in os.listdir(tmp_path) if ".shardkit-tmp-" in e]

    for extra in ("NOTES.txt", "runs/r1/model.keras", "runs/r1", "runs", "train/extra.tfrecord"):
        p = tmp_path / "ds" / extra
        p.rmdir() if p.is_dir() else p.unlink()
    rc, err = run_convert([*argv, "--seed", "3", "--overwrite"])
    assert rc == 0, err
    assert read_metadata(out).seed == 3


def test_overwrite_on_an_object_store_refuses_foreign_files_too(knots_h5: str, mounted: str) -> None:
    argv = [knots_h5, "--out", "mounted://data/ds", *IMAGE_ARGS, "--num-shards", "2", "--workers", "1"]
    rc, err = run_convert(argv)
    assert rc == 0, err
    published = os.path.join(mounted, "data", "ds")
    with open(os.path.join(published, "NOTES.txt"), "w") as f:
        f.write("my notes")
    before = _tree(published)
    rc, err = run_convert([*argv, "--seed", "3", "--overwrite"])
    assert rc == 1
    assert err.splitlines()[0] == ("shardkit-convert: error: mounted://data/ds: holds NOTES.txt, which is not part "
                                   "of the dataset; --overwrite replaces only a dataset: move it out of "
                                   "mounted://data/ds or choose another --out")
    assert _tree(published) == before


def test_publish_rechecks_for_files_added_during_the_conversion(knots_h5: str, tmp_path) -> None:
    out = str(tmp_path / "ds")
    rc, err = run_convert([knots_h5, "--out", out, *IMAGE_ARGS, "--num-shards", "2", "--workers", "1"])
    assert rc == 0, err
    meta = read_metadata(out)
    (tmp_path / "ds" / "NOTES.txt").write_text("written while converting")
    tmp = publish.tmp_dir_for(out)
    os.makedirs(tmp)
    before = _tree(out)
    with pytest.raises(PublishError, match="holds NOTES.txt, which is not part of the dataset"):
        publish.publish(tmp, out, meta, overwrite=True, skip=())
    assert _tree(out) == before


# stale temp dirs on shared storage


def _dead_pid() -> int:
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


def test_clean_stale_removes_only_this_hosts_dead_runs_or_abandoned_ones(tmp_path) -> None:
    out = str(tmp_path / "ds")
    host, dead = publish.host_name(), _dead_pid()
    names = {
        "mine_dead": f".ds.shardkit-tmp-{host}-{dead}-0123abcd",
        "mine_dead_old": f".ds.shardkit-tmp-{host}-{dead}-0123abcd-old",
        "mine_alive": f".ds.shardkit-tmp-{host}-{os.getpid()}-0123abcd",
        "other_host": f".ds.shardkit-tmp-node-7.cluster-{dead}-0123abcd",
        "other_host_abandoned": f".ds.shardkit-tmp-node-7.cluster-{dead}-4567abcd",
        "no_host_recent": f".ds.shardkit-tmp-{dead}-0123abcd",
        "no_host_abandoned": f".ds.shardkit-tmp-{dead}-89abcdef",
        "other_dataset": f".dsx.shardkit-tmp-{host}-{dead}-0123abcd",
    }
    for n in names.values():
        (tmp_path / n / "train").mkdir(parents=True)
        (tmp_path / n / "train" / "train-00000-of-00001.tfrecord.inprogress-1").write_bytes(b"x")
    old = publish.time.time() - publish.LEASE_SECONDS - 60
    for key in ("other_host_abandoned", "no_host_abandoned"):
        for d, _, files in os.walk(tmp_path / names[key]):
            for p in [d] + [os.path.join(d, f) for f in files]:
                os.utime(p, (old, old))

    removed = publish.clean_stale(out)

    gone = {"mine_dead", "mine_dead_old", "other_host_abandoned", "no_host_abandoned"}
    assert sorted(removed) == sorted(str(tmp_path / names[k]) for k in gone)
    assert sorted(os.listdir(tmp_path)) == sorted(names[k] for k in names if k not in gone)


def test_temp_dir_names_carry_host_and_pid(tmp_path) -> None:
    name = os.path.basename(publish.tmp_dir_for(str(tmp_path / "ds")))
    assert name.startswith(f".ds.shardkit-tmp-{publish.host_name()}-{os.getpid()}-")
    assert not publish.is_stale(name, "ds", str(tmp_path))


# degenerate data and settings


def test_single_class_is_refused(tmp_path) -> None:
    src = _h5(str(tmp_path / "one.h5"), np.full(12, 4))
    out = str(tmp_path / "o")
    rc, err = run_convert([src, "--out", out, *ARRAY])
    assert rc == 1
    assert err.splitlines()[0] == (f"shardkit-convert: error: {src}: node /y: every row has label '4'; a classifier "
                                   "needs at least 2 classes: check --label")
    assert no_leftovers(out)


def test_small_class_and_too_many_shards_are_reported(tmp_path) -> None:
    src = _h5(str(tmp_path / "small.h5"), np.array([0] * 10 + [1] * 10 + [2] * 2))
    out = str(tmp_path / "o")
    rc, err = run_convert([src, "--out", out, *ARRAY, "--num-shards", "50"])
    assert rc == 0, err
    meta = read_metadata(out)
    where = ", ".join(f"{s} {meta.splits[s].class_counts[2] if s in meta.splits else 0}"
                      for s in ("train", "validation", "test"))
    assert err.splitlines() == [
        f"shardkit-convert: warning: class '2' has 2 rows, fewer than the 3 splits; its rows went to: {where}",
        f"shardkit-convert: warning: --num-shards 50 is more than the {meta.splits['train'].count} train rows: "
        f"writing {meta.splits['train'].count} train shards of one row each instead",
    ]
    assert len(meta.splits["train"].shards) == meta.splits["train"].count == 18
    assert all(s.count == 1 for s in meta.splits["train"].shards)


@pytest.mark.parametrize("setting, message", [
    (["--workers", "0"], "argument --workers: '0': must be positive"),
    (["--seed", "-1"], "argument --seed: '-1': must be 0 or more"),
])
def test_bad_settings_are_one_line_usage_errors(knots_h5: str, tmp_path, setting: list[str], message: str) -> None:
    out = str(tmp_path / "o")
    res = _cli(knots_h5, "--out", out, *IMAGE_ARGS, *setting)
    assert res.returncode == 2
    assert _one_error_line(res) == f"shardkit-convert: error: {message} (see shardkit-convert --help)"
    assert no_leftovers(out)


def test_api_checks_seed_and_workers(knots_h5: str, tmp_path) -> None:
    from shardkit.convert.pipeline import ConvertConfig, convert

    base = dict(inputs=(knots_h5,), out=str(tmp_path / "o"), kind="image", data="/train_data", label="/train_label",
                image_shape=(24, 24, 3), progress=False)
    with pytest.raises(InputError, match=r"^--seed -1: must be 0 or more$"):
        convert(ConvertConfig(**base, seed=-1))
    with pytest.raises(InputError, match=r"^--workers -2: must be positive"):
        convert(ConvertConfig(**base, workers=-2))


# Beam options after --


def test_unknown_beam_option_and_stray_word_are_refused(knots_h5: str, tmp_path) -> None:
    out = str(tmp_path / "o")
    res = _cli(knots_h5, "--out", out, *IMAGE_ARGS, "--", "--direct_num_worker=2", "--bogus", "oops", "stray")
    assert res.returncode == 2
    assert _one_error_line(res) == (
        "shardkit-convert: error: after --: unknown option --direct_num_worker (did you mean --direct_num_workers?); "
        "unknown option --bogus; stray word 'stray'; Beam would silently ignore them: fix the spelling or remove them")
    assert no_leftovers(out)


def test_misspelled_runner_is_unknown_not_remote(knots_h5: str, tmp_path) -> None:
    out = str(tmp_path / "o")
    res = _cli(knots_h5, "--out", out, *IMAGE_ARGS, "--", "--runner=DataflowRuner", "--project=p")
    assert res.returncode == 2
    line = _one_error_line(res)
    assert line.startswith("shardkit-convert: error: --runner=DataflowRuner: unknown runner; known runners: ")
    assert "DataflowRunner, " in line and "FlinkRunner" in line and "elsewhere" not in line
    assert no_leftovers(out)


def test_known_options_pass_including_the_runners_own() -> None:
    check_beam_args(["--runner=DataflowRunner", "--project=p", "--region", "r", "--temp_location=gs://b/t"])
    check_beam_args(["--runner=apache_beam.runners.dask.dask_runner.DaskRunner", "--dask_client_address=h:8786"])
    check_beam_args(["--direct_num_workers=2", "--default_sdk_harness_log_level=INFO"])
    with pytest.raises(InputError, match="cannot be imported here"):
        check_beam_args(["--runner=no_such_pkg.NoRunner"])


# quiet by default


def test_default_conversion_prints_only_shardkit_lines(knots_h5: str, tmp_path) -> None:
    res = _cli(knots_h5, "--out", str(tmp_path / "o"), *IMAGE_ARGS, "--num-shards", "2", "--workers", "2")
    assert res.returncode == 0, res.stderr
    lines = (res.stdout + res.stderr).splitlines()
    assert lines and all(ln.startswith(("shardkit-convert: ", "  ")) for ln in lines), lines
    assert not [ln for ln in lines if "INFO" in ln or "WARNING" in ln or "apache_beam" in ln]
    assert "FnApiRunner (multi_processing, 2 workers)" in read_metadata(str(tmp_path / "o")).stats["runner"]


def test_verbose_brings_beam_logs_back(knots_h5: str, tmp_path) -> None:
    res = _cli(knots_h5, "--out", str(tmp_path / "o"), *IMAGE_ARGS, "--num-shards", "2", "--workers", "1", "-v",
               "--quiet")
    assert res.returncode == 0, res.stderr
    assert "INFO apache_beam.runners.worker." in res.stderr


def test_worker_processes_log_at_the_converters_level() -> None:
    from shardkit.convert.worker import command

    assert command(123, "CRITICAL").endswith("-m shardkit.convert.worker --converter-pid 123 --log-level CRITICAL")
    assert command(123, "INFO").split("; ")[-1].startswith("exec ")


# sequence letters


def test_unknown_letters_count_what_was_stored() -> None:
    enc = SequenceEncoder(max_length=5)
    codes, st = enc.encode_one("ACXDEFXXG", enc.table(), 0, "p.csv")
    assert np.frombuffer(codes, np.uint8).tolist() == [1, 2, 0, 3, 4]
    assert (st.length, st.truncated, st.unknown, st.cut) == (9, True, 1, 4)
    codes, st = enc.encode_one("AXC", enc.table(), 1, "p.csv")
    assert (st.truncated, st.unknown, st.cut) == (False, 1, 0)


def test_example_proteins_length_options(tmp_path) -> None:
    path = str(tmp_path / "p.csv")
    assert examples.main(["proteins", path, "--n", "30", "--min-length", "20", "--max-length", "40"]) == 0
    assert pd.read_csv(path)["Sequence"].str.len().between(20, 40).all()
    with pytest.raises(SystemExit):
        examples.main(["proteins", path, "--min-length", "50", "--max-length", "40"])
