"""Run directories and read-time integrity: a finished run is never silently replaced, an interrupted run
resumes only with its own settings and dataset, evaluation names its dataset, a dataset replaced or
miscounted while a run reads it stops the run, and Keras never runs out of data (docs/train.md's promise, also
asserted on the resumed and multi-worker runs of test_train_fit.py and the --skip-corrupt runs of test_faults.py).

Datasets come from the real converter (tests/datasets.py); runs are real Keras fits of one tiny epoch.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

from conftest import IMAGE_ARGS, run_convert
from datasets import knots_dataset
from shardkit import spec
from shardkit.train import cli
from test_train_fit import RECORDER, _env


def fit_args(dataset: str, out: str | Path, *extra: str, tensorboard: bool = False) -> list[str]:
    """A one-epoch knot-cnn fit; ``extra`` options come last, so they override these (argparse keeps the last)."""
    return ["fit", dataset, "--model", "knot-cnn", "--epochs", "1", "--batch-size", "8", "--out", str(out),
            "--verbose", "0", "--patience", "0", *([] if tensorboard else ["--no-tensorboard"]), *extra]


@pytest.fixture(scope="module")
def knots(tmp_path_factory: pytest.TempPathFactory) -> str:
    return knots_dataset(tmp_path_factory, n_per_class=20, size=24, num_shards=2)


@pytest.fixture(scope="module")
def other(tmp_path_factory: pytest.TempPathFactory) -> str:
    """Another conversion of the same kind of images (another seed): same spec, another dataset id."""
    return knots_dataset(tmp_path_factory, n_per_class=20, size=24, num_shards=2, seed=1)


@pytest.fixture(scope="module")
def finished(knots: str, tmp_path_factory: pytest.TempPathFactory) -> str:
    out = str(tmp_path_factory.mktemp("finished") / "run")
    assert cli.main(fit_args(knots, out)) == 0
    return out


def fingerprint(directory: str | Path) -> dict[str, str]:
    """Every file under ``directory`` (relative path) -> sha256 of its bytes."""
    out = {}
    for root, _, files in os.walk(directory):
        for name in files:
            path = os.path.join(root, name)
            out[os.path.relpath(path, directory)] = hashlib.sha256(Path(path).read_bytes()).hexdigest()
    return out


def error_line(capsys: pytest.CaptureFixture[str]) -> str:
    lines = [line for line in capsys.readouterr().err.splitlines() if line.startswith("shardkit-train: error: ")]
    assert len(lines) == 1, lines
    return lines[0][len("shardkit-train: error: "):]


def test_every_run_records_its_dataset_id(knots: str, finished: str) -> None:
    dataset_id = spec.read_metadata(knots).dataset_id
    assert len(dataset_id) == 16
    config = json.loads(Path(finished, "config.json").read_text())
    assert config["dataset_id"] == dataset_id
    assert json.loads(Path(finished, "metrics.json").read_text())["dataset_id"] == dataset_id
    assert config["absolute_paths"] == {"dataset": os.path.abspath(knots), "out": os.path.abspath(finished)}


@pytest.mark.parametrize("same_settings", [True, False])
def test_a_finished_run_is_refused_and_left_byte_identical(
    same_settings: bool, knots: str, other: str, finished: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    run = str(shutil.copytree(finished, tmp_path / "run"))
    before = fingerprint(run)
    args = fit_args(knots, run) if same_settings else fit_args(other, run, "--epochs", "2", "--batch-size", "16")
    assert cli.main(args) == 2
    assert error_line(capsys) == f"{run}: holds a finished run (metrics.json); pass --overwrite to replace it, or choose another --out"
    assert fingerprint(run) == before


def test_overwrite_replaces_the_whole_run(
    knots: str, other: str, finished: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    run = str(shutil.copytree(finished, tmp_path / "run"))
    assert cli.main(["evaluate", run, knots, "--split", "validation"]) == 0
    os.makedirs(os.path.join(run, "logs", "train"))
    Path(run, "logs", "train", "events.out.tfevents.1.old").write_bytes(b"an older run's TensorBoard events")
    assert cli.main(fit_args(other, run, "--batch-size", "16", "--overwrite", tensorboard=True)) == 0
    capsys.readouterr()
    assert not list(Path(run).glob("evaluation_*")) and not list(Path(run).glob("confusion_validation*"))
    events = [p.name for p in Path(run, "logs").rglob("events.out.tfevents.*")]
    assert events and "events.out.tfevents.1.old" not in events
    config = json.loads(Path(run, "config.json").read_text())
    assert (config["dataset"], config["batch_size"]) == (other, 16)
    assert json.loads(Path(run, "metrics.json").read_text())["dataset_id"] == spec.read_metadata(other).dataset_id


def test_overwrite_never_removes_files_a_run_did_not_write(
    knots: str, finished: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    run = str(shutil.copytree(finished, tmp_path / "run"))
    Path(run, "NOTES.txt").write_text("what I tried")
    before = fingerprint(run)
    assert cli.main(fit_args(knots, run, "--overwrite")) == 2
    assert error_line(capsys) == (
        f"{run}: holds files that are not part of a shardkit-train run (NOTES.txt); refusing to replace it; "
        "move them or choose another --out"
    )
    assert fingerprint(run) == before


def test_a_directory_that_is_not_a_run_is_refused(knots: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    Path(tmp_path, "runs", "other-run").mkdir(parents=True)
    Path(tmp_path, "runs", "README.md").write_text("my runs")
    before = fingerprint(tmp_path / "runs")
    assert cli.main(fit_args(knots, tmp_path / "runs")) == 2
    assert error_line(capsys) == (
        f"{tmp_path / 'runs'}: exists and is not a shardkit-train run directory (holds README.md, other-run); "
        "choose another --out"
    )
    assert fingerprint(tmp_path / "runs") == before


@pytest.mark.parametrize(
    "change, expected",
    [
        (["--model", RECORDER], "with --model knot-cnn, this run has --model test_train_recorder:build"),
        (["--batch-size", "16"], "with --batch-size 8, this run has --batch-size 16"),
        (["--seed", "3"], "with --seed 0, this run has --seed 3"),
        (["--sampling", "balanced"], "with --sampling epoch, this run has --sampling balanced"),
        (["DATASET"], "of dataset id {old} ({knots}), this run reads dataset id {new} ({other})"),
    ],
)
def test_an_interrupted_run_resumes_only_with_its_settings(
    change: list[str], expected: str, knots: str, other: str, finished: str, tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    run = str(shutil.copytree(finished, tmp_path / "run"))
    os.remove(os.path.join(run, "metrics.json"))  # what a run killed before its end leaves
    before = fingerprint(run)
    args = fit_args(other, run) if change == ["DATASET"] else fit_args(knots, run, *change)
    assert cli.main(args) == 2
    difference = expected.format(
        old=spec.read_metadata(knots).dataset_id, new=spec.read_metadata(other).dataset_id, knots=knots, other=other
    )
    assert error_line(capsys) == (
        f"{run}: holds an interrupted run {difference}; rerun with its settings to resume it, "
        "or pass --overwrite or another --out to start over"
    )
    assert fingerprint(run) == before  # config.json included: a refused resume rewrites nothing


def test_repeat_keeps_the_seeds_it_finished_and_refuses_a_finished_repeat(
    knots: str, finished: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    run = tmp_path / "run"
    shutil.copytree(finished, run / "seed-0")  # a --repeat 2 killed during seed 1: seed 0 is done
    seed_0 = fingerprint(run / "seed-0")
    args = fit_args(knots, run, "--repeat", "2")
    assert cli.main(args) == 0
    assert f"{run / 'seed-0'}: finished earlier with these settings; keeping its results" in capsys.readouterr().err
    assert fingerprint(run / "seed-0") == seed_0
    assert json.loads((run / "summary.json").read_text())["seeds"] == [0, 1]

    done = fingerprint(run)
    assert cli.main(args) == 2
    assert error_line(capsys) == f"{run}: holds a finished run (summary.json); pass --overwrite to replace it, or choose another --out"
    assert fingerprint(run) == done


def test_a_failed_fit_leaves_no_directory_behind(knots: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "new" / "nested" / "run"
    assert cli.main(fit_args(knots, out, "--model", "test_train_fit:wrong_size_model")) == 2  # refused up front
    assert "(64, 64, 3)" in error_line(capsys) and not (tmp_path / "new").exists()
    # a fit that fails while reading, before a backup was saved: test_a_record_count_that_differs_from_metadata_stops_fit


@pytest.mark.parametrize("delta", [5, -5])
def test_a_record_count_that_differs_from_metadata_stops_fit(
    delta: int, knots: str, tmp_path: Path, capsys: pytest.CaptureFixture[str], recwarn: pytest.WarningsRecorder
) -> None:
    dataset = str(shutil.copytree(knots, tmp_path / "dataset"))
    meta = json.loads(Path(dataset, spec.METADATA_FILE).read_text())
    shard = meta["splits"]["train"]["shards"][1]
    actual = shard["count"]
    shard["count"] += delta
    meta["splits"]["train"]["count"] += delta
    Path(dataset, spec.METADATA_FILE).write_text(json.dumps(meta))
    assert cli.main(fit_args(dataset, tmp_path / "new" / "nested" / "run")) == 2
    assert error_line(capsys) == (
        f"{dataset}/{shard['path']}: holds {actual} records but metadata.json records {actual + delta}; the shard "
        f"does not match the metadata (shardkit-train verify {dataset} lists every difference)"
    )
    assert not [w for w in recwarn if "ran out of data" in str(w.message)]  # Keras did not stop early on its own
    assert not (tmp_path / "new").exists()  # it failed while reading, before a backup was saved: no directory left


def test_evaluate_names_the_training_dataset_and_refuses_another(
    knots: str, other: str, finished: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    run = str(shutil.copytree(finished, tmp_path / "run"))
    own, foreign = spec.read_metadata(knots).dataset_id, spec.read_metadata(other).dataset_id
    assert cli.main(["evaluate", run, knots]) == 0
    err = capsys.readouterr().err
    assert f"shardkit-train: {run} was trained on {knots} (dataset id {own})\n" in err
    first = Path(run, f"evaluation_test_{own}.json")
    evaluation = json.loads(first.read_text())
    assert evaluation["dataset_id"] == own and evaluation["trained_on"] == {"dataset": knots, "dataset_id": own}
    assert Path(run, f"confusion_test_{own}.png").stat().st_size > 0

    before = fingerprint(run)
    assert cli.main(["evaluate", run, other]) == 2
    assert error_line(capsys) == (
        f"{other}: dataset id {foreign} is not the one {run} was trained on ({own}, {knots}); its splits may "
        "overlap that training data; pass --other-dataset to evaluate on it anyway"
    )
    assert fingerprint(run) == before

    assert cli.main(["evaluate", run, other, "--other-dataset"]) == 0
    assert json.loads(Path(run, f"evaluation_test_{foreign}.json").read_text())["dataset_id"] == foreign
    assert fingerprint(run)[first.name] == before[first.name]  # the first evaluation is still there, unchanged


# A model that pauses training (for the test below) at batch $SHARDKIT_PAUSE_AT until $SHARDKIT_PAUSE_DIR/go exists.


def pausing_build(metadata: spec.Metadata):
    import keras
    import numpy as np
    import tensorflow as tf

    flags, at = os.environ["SHARDKIT_PAUSE_DIR"], int(os.environ["SHARDKIT_PAUSE_AT"])
    seen = [0]

    def step(x):
        seen[0] += 1
        if seen[0] == at:
            Path(flags, "paused").touch()
            deadline = time.time() + 120
            while not os.path.exists(os.path.join(flags, "go")) and time.time() < deadline:
                time.sleep(0.05)
        return np.int64(0)

    class Pause(keras.layers.Layer):
        def call(self, x, training=None):
            if not training:
                return x
            done = tf.py_function(step, [x], tf.int64)
            with tf.control_dependencies([done]):
                return tf.identity(x)

    f = metadata.features[0]
    image = keras.Input(f.shape, dtype="uint8", name=f.name)
    x = Pause()(keras.layers.Rescaling(1 / 255.0)(image))
    x = keras.layers.GlobalAveragePooling2D()(keras.layers.Conv2D(4, 3, strides=2, activation="relu")(x))
    return keras.Model(image, keras.layers.Dense(metadata.label.num_classes, activation="softmax")(x))


def test_a_dataset_converted_again_during_fit_stops_it(knots: str, tmp_path: Path) -> None:
    dataset = str(shutil.copytree(knots, tmp_path / "dataset"))
    source = os.path.join(os.path.dirname(knots), "knots.h5")
    old_id = spec.read_metadata(dataset).dataset_id
    flags = tmp_path / "flags"
    flags.mkdir()
    run = tmp_path / "run"
    args = [dataset, "--model", "test_train_runs:pausing_build", "--epochs", "2", "--batch-size", "8", "--out", str(run),
            "--verbose", "0", "--no-tensorboard", "--patience", "0"]
    env = _env(SHARDKIT_PAUSE_DIR=str(flags), SHARDKIT_PAUSE_AT="8")  # epoch 2 of 6 steps, step 2
    fit = subprocess.Popen([sys.executable, "-m", "shardkit.train", "fit", *args], env=env,
                           stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.time() + 120
        while not (flags / "paused").exists() and fit.poll() is None and time.time() < deadline:
            time.sleep(0.1)
        assert (flags / "paused").exists(), fit.communicate(timeout=5)[1][-3000:]
        rc, err = run_convert([source, "--out", dataset, *IMAGE_ARGS, "--num-shards", "2", "--seed", "2", "--overwrite"])
        assert rc == 0, err
        (flags / "go").touch()
        _, stderr = fit.communicate(timeout=120)
    finally:
        if fit.poll() is None:
            fit.kill()
    new_id = spec.read_metadata(dataset).dataset_id
    assert new_id != old_id
    assert fit.returncode == 2, stderr[-3000:]
    assert (f"shardkit-train: error: {dataset}: the dataset changed while it was being read (dataset id {old_id} "
            f"is now {new_id}); stopped") in stderr, stderr[-3000:]
    assert "so that no result mixes two datasets; start again with --overwrite or another --out\n" in stderr
    assert not (run / "metrics.json").exists()
    history = (run / "history.csv").read_text().splitlines()
    assert [line.split(",")[0] for line in history[1:]] == ["1"]  # the mixed epoch is not recorded (epochs numbered from 1)

    config = (run / "config.json").read_bytes()
    assert cli.main(["fit", *args]) == 2  # a rerun would resume over the new dataset: refused
    assert (run / "config.json").read_bytes() == config
