"""Documented paths that a new user follows, where following them found a bug: each test runs the path as the
docs show it (through the CLI where the CLI is the point) and checks what the docs promise."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import psutil

from conftest import no_leftovers, random_images_h5


def _worker_processes(pid: int) -> list[psutil.Process]:
    """The converter's worker processes once their shell has exec'd Python (still starting up, maybe)."""
    out = []
    for p in psutil.Process(pid).children(recursive=True):
        try:
            cmd = " ".join(p.cmdline())
            if "shardkit.convert.worker" in cmd and "trap" not in cmd:
                out.append(p)
        except psutil.NoSuchProcess:
            pass
    return out


def test_ctrl_c_while_the_workers_start_stops_the_conversion(tmp_path) -> None:
    # convert.md: Ctrl-C prints one `interrupted; nothing was published` line (exit 130). Pressed while the
    # worker processes were still starting, Beam waited for them and they for instructions, forever.
    src = random_images_h5(str(tmp_path / "r.h5"), 300)
    out = tmp_path / "ds"
    proc = subprocess.Popen([sys.executable, "-m", "shardkit.convert", src, "--out", str(out), "--kind", "image",
                             "--data", "/x", "--label", "/y", "--image-shape", "32,32,3", "--workers", "2",
                             "--num-shards", "4"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True)
    deadline = time.time() + 60
    while proc.poll() is None and time.time() < deadline and len(_worker_processes(proc.pid)) < 2:
        time.sleep(0.01)
    assert proc.poll() is None, "conversion finished before it could be stopped"
    workers = _worker_processes(proc.pid)
    os.killpg(proc.pid, signal.SIGINT)  # as a terminal's Ctrl-C: the workers get it too (and ignore it)
    try:
        _, err = proc.communicate(timeout=45)
    except subprocess.TimeoutExpired:
        for p in [*workers, psutil.Process(proc.pid)]:
            p.kill()
        proc.communicate()
        raise AssertionError("Ctrl-C during worker start-up left the converter hanging") from None
    assert proc.returncode == 130, err
    assert [ln for ln in err.splitlines() if "rows/s" not in ln] == [
        "shardkit-convert: interrupted; nothing was published"], err
    assert no_leftovers(str(out))
    psutil.wait_procs(workers, timeout=10)
    assert not [p for p in workers if p.is_running() and p.status() != psutil.STATUS_ZOMBIE]


def test_an_out_folder_that_is_no_dataset_is_refused_with_the_way_out(convert, knots_h5, tmp_path) -> None:
    # operations.md: OUT that exists and is not a shardkit dataset is refused with the way out. Without
    # --overwrite the message used to say "pass --overwrite to replace it", which was then refused too.
    from conftest import IMAGE_ARGS

    out = tmp_path / "mine"
    out.mkdir()
    (out / "notes.txt").write_text("mine")
    for extra in ([], ["--overwrite"]):
        rc, err = convert([knots_h5, "--out", str(out), *IMAGE_ARGS, *extra])
        assert rc == 1
        assert err.splitlines() == [f"shardkit-convert: error: {out}: exists and is not a shardkit dataset; refusing "
                                    "to replace it: choose another --out", "shardkit-convert: nothing was published"]
    assert os.listdir(out) == ["notes.txt"] and (out / "notes.txt").read_text() == "mine"


def test_the_python_api_is_as_quiet_as_the_command_line(knots_h5, tmp_path) -> None:
    # convert.md's Python API snippet (workers=2): the driver relayed each worker's Beam warnings to stderr
    code = ("import sys; from shardkit.convert.pipeline import ConvertConfig, convert; "
            "convert(ConvertConfig(inputs=(sys.argv[1],), out=sys.argv[2], kind='image', data='/train_data', "
            "label='/train_label', image_shape=(24, 24, 3), num_shards=2, workers=2))")
    res = subprocess.run([sys.executable, "-c", code, knots_h5, str(tmp_path / "ds")], capture_output=True, text=True,
                         timeout=120)
    assert res.returncode == 0, res.stderr
    assert os.path.exists(tmp_path / "ds" / "metadata.json")
    assert "apache_beam" not in res.stderr and "WARN" not in res.stderr, res.stderr
    assert "shardkit-convert: done in" in res.stderr  # its own summary stays


def test_inspect_refuses_a_negative_example_count(tmp_path) -> None:
    # operations.md: --examples N changes how many are decoded; -1 reached tf.data's take(-1), which decodes the
    # whole train split
    res = subprocess.run([sys.executable, "-m", "shardkit.train", "inspect", str(tmp_path), "--examples", "-1"],
                         capture_output=True, text=True, timeout=60)
    assert res.returncode == 2
    assert res.stderr.splitlines() == ["shardkit-train inspect: error: argument --examples: must be a whole number of "
                                       "at least 0, got '-1' (see shardkit-train inspect --help)"]


def test_evaluate_names_a_split_the_dataset_lacks(convert, features_h5, tmp_path, capsys) -> None:
    # train.md: evaluate RUN_DIR DATASET [--split test]; a split the dataset does not have (converted with
    # --split 0.8,0,0.2) ended in a KeyError traceback, exit 1, and a misspelled one too
    from shardkit.train import cli

    data = str(tmp_path / "f")
    assert convert([features_h5, "--out", data, "--kind", "array", "--data", "/features", "--label", "/labels",
                    "--split", "0.8,0,0.2"])[0] == 0
    run = str(tmp_path / "run")
    assert cli.main(["fit", data, "--model", "sequence-lstm", "--epochs", "1", "--batch-size", "32", "--out", run,
                     "--verbose", "0", "--no-tensorboard"]) == 0
    capsys.readouterr()
    assert cli.main(["evaluate", run, data, "--split", "validation"]) == 2
    err = capsys.readouterr().err.splitlines()
    assert err[-1] == (f"shardkit-train: error: {data}: has no validation split (it has train, test); "
                       "choose one with --split")
    assert "Traceback" not in "\n".join(err)
    before = sorted(os.listdir(run))
    res = subprocess.run([sys.executable, "-m", "shardkit.train", "evaluate", run, data, "--split", "valid"],
                         capture_output=True, text=True, timeout=60)
    assert res.returncode == 2
    assert res.stderr.splitlines() == [
        "shardkit-train evaluate: error: argument --split: invalid choice: 'valid' (choose from 'train', 'validation', "
        "'test') (see shardkit-train evaluate --help)"]
    assert sorted(os.listdir(run)) == before


def test_a_source_file_given_as_the_dataset_is_named_as_a_file(knots_h5, capsys) -> None:
    # README: shardkit-train fit data/knots ...; given the HDF5 source instead, it said "no such dataset directory"
    # about a file that exists
    from shardkit.train import cli

    assert cli.main(["inspect", knots_h5]) == 2
    assert capsys.readouterr().err.splitlines() == [
        f"shardkit-train: error: {knots_h5}: is a file; give the dataset directory shardkit-convert wrote (the one "
        "holding metadata.json)"]


def test_an_unparsable_split_is_a_usage_error(convert, knots_h5, tmp_path) -> None:
    # convert.md: exit status 2 for unparsable arguments; '--split a,b' was exit 1 with "nothing was published"
    from conftest import IMAGE_ARGS

    rc, err = convert([knots_h5, "--out", str(tmp_path / "o"), *IMAGE_ARGS, "--split", "a,b"])
    assert (rc, err.splitlines()) == (2, ["shardkit-convert: error: argument --split: 'a,b': expected comma-separated "
                                          "fractions such as 0.8,0.1,0.1 (see shardkit-convert --help)"])
    assert not os.path.exists(tmp_path / "o")


def test_split_inputs_not_given_as_split_equals_path_are_a_usage_error(convert, knots_h5, tmp_path) -> None:
    # convert.md: with --split-inputs, INPUT is train=PATH [validation=PATH] [test=PATH]; a misspelled split was
    # exit 1 with "nothing was published", unlike the other unparsable arguments (exit 2)
    from conftest import IMAGE_ARGS

    rc, err = convert(["--split-inputs", f"train={knots_h5}", f"valid={knots_h5}", "--out", str(tmp_path / "o"),
                       *IMAGE_ARGS])
    assert (rc, err.splitlines()) == (2, [f"shardkit-convert: error: 'valid={knots_h5}': with --split-inputs each "
                                          "input is SPLIT=PATH, SPLIT one of ('train', 'validation', 'test')"])
    assert not os.path.exists(tmp_path / "o")


def test_inspect_log_shows_the_traceback_of_a_refusal(tmp_path, capsys) -> None:
    # train.md: every subcommand takes -v/--log, which adds a traceback to an error; inspect printed only the line
    from shardkit.train import cli

    missing = str(tmp_path / "nothing")
    assert cli.main(["inspect", missing]) == 2
    assert capsys.readouterr().err.splitlines() == [f"shardkit-train: error: {missing}: no such dataset directory"]
    assert cli.main(["inspect", missing, "--log"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("Traceback")
    assert err.splitlines()[-1] == f"shardkit-train: error: {missing}: no such dataset directory"
