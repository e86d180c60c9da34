"""fit/evaluate on the tensorflow, jax and torch Keras backends, and --steps-per-execution: exact epochs, a
resume at a step that is not a multiple of the steps per call, per-batch callbacks and the progress bar.

Each backend run is a real ``shardkit-train fit`` in a subprocess (Keras picks its backend once per process) on
a tiny knot dataset: 96 training examples = 7 steps of 14, so 3 steps per call do not divide the epoch. torch
is not in the test extra (its wheels bring gigabytes of CUDA libraries); its test is skipped without it.
"""

from __future__ import annotations

import importlib.metadata
import importlib.util
import json
import os
import shutil
import sys
from pathlib import Path

import numpy as np
import pytest

from datasets import knots_dataset
from shardkit.train import cli, pacing
from test_train_fit import _train
from test_train_paths import _fit_killed_mid_epoch
from test_train_recorder import RowRecorder, read_log

TINY = "test_backends:tiny_cnn"
STEPS = 7  # 96 training examples in batches of 14


def tiny_cnn(metadata):
    """A small CNN with Dropout (so a resume must restore its generator), quick to compile on any backend."""
    import keras

    f = metadata.features[0]
    image = keras.Input(f.shape, dtype="uint8", name=f.name)
    x = keras.layers.Rescaling(1 / 255.0)(image)
    x = keras.layers.Conv2D(4, 3, strides=2, activation="relu")(x)
    x = keras.layers.GlobalAveragePooling2D()(x)
    x = keras.layers.Dropout(0.3)(x)
    return keras.Model(image, keras.layers.Dense(metadata.label.num_classes, activation="softmax")(x))


@pytest.fixture(scope="module")
def knots(tmp_path_factory: pytest.TempPathFactory) -> str:
    return knots_dataset(tmp_path_factory, n_per_class=40, size=24, num_shards=2)


def _args(dataset: str, out: Path, *extra: str) -> list[str]:
    return [dataset, "--model", TINY, "--epochs", "1", "--batch-size", "14", "--out", str(out), "--backup-every", "4",
            "--patience", "0", "--verbose", "2", "--no-tensorboard", *extra]


def _assert_exact_resume(dataset: str, tmp_path: Path, backend: list[str]) -> tuple[Path, str]:
    """A one-epoch run at 3 steps per call, and the same run killed at step 4 (one step per call) and resumed at 3
    steps per call, end with byte-identical history.csv and the same test metrics. Returns the whole run and
    its stderr."""
    whole, crashed = tmp_path / "whole", tmp_path / "crashed"
    done = _train(_args(dataset, whole, *backend, "--steps-per-execution", "3"))
    assert done.returncode == 0, done.stderr[-3000:]
    assert f"{STEPS}/{STEPS} - " in done.stdout and "ran out of data" not in done.stderr, done.stdout
    _fit_killed_mid_epoch(_args(dataset, crashed, *backend, "--steps-per-execution", "1"), crashed, epoch=0)
    position = json.loads((crashed / "backup" / "training_metadata.json").read_text())
    assert (position["epoch"], position["step"]) == (0, 4)  # not a multiple of 3
    resumed = _train(_args(dataset, crashed, *backend, "--steps-per-execution", "3"))
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert f"resuming from backup at epoch 1, step 4/{STEPS}" in resumed.stderr
    assert "3/3 - " in resumed.stdout and "ran out of data" not in resumed.stderr, resumed.stdout
    assert (crashed / "history.csv").read_text() == (whole / "history.csv").read_text()
    a, b = (json.loads((d / "metrics.json").read_text()) for d in (whole, crashed))
    assert a["test"] == b["test"] and a["epochs_run"] == b["epochs_run"] == 1
    return whole, done.stderr


def test_steps_per_execution_3_resumes_bit_identically_at_a_step_that_is_not_a_multiple(knots: str, tmp_path: Path) -> None:
    whole, _ = _assert_exact_resume(knots, tmp_path, [])
    metrics = json.loads((whole / "metrics.json").read_text())
    assert metrics["steps_per_execution"] == 3 and metrics["backend"] == "tensorflow"


def test_jax_trains_data_parallel_resumes_exactly_and_records_its_backend(
    knots: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    pytest.importorskip("jax")
    whole, err = _assert_exact_resume(knots, tmp_path, ["--backend", "jax", "--logical-cpus", "2"])
    assert "2 replica(s), 1 worker(s); Keras backend jax" in err
    metrics = json.loads((whole / "metrics.json").read_text())
    config = json.loads((whole / "config.json").read_text())
    version = importlib.metadata.version("jax")
    assert (metrics["backend"], metrics["backend_version"], config["backend"], config["backend_version"]) == ("jax", version, "jax", version)
    assert (metrics["strategy"], metrics["replicas"], metrics["steps_per_execution"]) == ("DataParallel", 2, 3)
    assert metrics["test"]["examples"] == 12 and np.asarray(metrics["test"]["confusion_matrix"]).sum() == 12
    for name in ("training_curves.png", "confusion_test.png", "model.keras", "best.weights.h5"):
        assert (whole / name).stat().st_size > 0, name

    # the weights are the backend's own business: TensorFlow (this process) evaluates the JAX run alike
    assert cli.main(["evaluate", str(whole), knots]) == 0
    evaluation = json.loads(next(whole.glob("evaluation_test_*.json")).read_text())
    assert evaluation["backend"] == "tensorflow" and evaluation["confusion_matrix"] == metrics["test"]["confusion_matrix"]
    assert evaluation["loss"] == pytest.approx(metrics["test"]["loss"], abs=1e-4)

    # an interrupted JAX run is not resumed under TensorFlow, and nothing in it changes
    interrupted = Path(shutil.copytree(whole, tmp_path / "interrupted"))
    os.remove(interrupted / "metrics.json")
    before = {p: p.read_bytes() for p in interrupted.rglob("*") if p.is_file()}
    capsys.readouterr()
    assert cli.main(["fit", *_args(knots, interrupted)]) == 2
    assert capsys.readouterr().err.strip().splitlines()[-1] == (
        f"shardkit-train: error: {interrupted}: holds an interrupted run with --backend jax, this run has --backend "
        "tensorflow; rerun with its settings to resume it, or pass --overwrite or another --out to start over"
    )
    assert {p: p.read_bytes() for p in interrupted.rglob("*") if p.is_file()} == before

    uneven = _train(_args(knots, tmp_path / "uneven", "--backend", "jax", "--logical-cpus", "2", "--batch-size", "15"))
    assert uneven.returncode == 2 and "Traceback" not in uneven.stderr
    assert uneven.stderr.strip().splitlines()[-1] == ("shardkit-train: error: --batch-size 15 does not split evenly over "
                                                      "the 2 JAX devices; use a multiple of 2, or --strategy one")
    assert not (tmp_path / "uneven").exists()


@pytest.mark.skipif(importlib.util.find_spec("torch") is None, reason="torch is not installed (not in the test extra)")
def test_torch_trains_on_one_device_and_refuses_several_steps_per_call(knots: str, tmp_path: Path) -> None:
    done = _train(_args(knots, tmp_path / "run", "--backend", "torch"))
    assert done.returncode == 0, done.stderr[-3000:]
    assert f"{STEPS}/{STEPS} - " in done.stdout and "ran out of data" not in done.stderr
    metrics = json.loads((tmp_path / "run" / "metrics.json").read_text())
    assert (metrics["backend"], metrics["strategy"], metrics["epochs_run"]) == ("torch", "OneDevice", 1)
    assert metrics["backend_version"] == importlib.metadata.version("torch")

    refused = _train(_args(knots, tmp_path / "other", "--backend", "torch", "--steps-per-execution", "3"))
    assert refused.returncode == 2 and "Traceback" not in refused.stderr
    assert refused.stderr.strip().splitlines()[-1] == (
        "shardkit-train: error: --steps-per-execution 3: Keras on the torch backend runs one train step per call; "
        "use 1 or auto, or --backend jax/tensorflow"
    )
    assert not (tmp_path / "other").exists()


def test_the_last_call_of_an_epoch_runs_only_the_steps_left(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """3 steps per call over 7-step epochs of one continuous stream: each epoch trains on exactly its 7 batches,
    per-batch callbacks see steps 2, 5, 6, the backup records exact positions, the progress bar ends at 7/7."""
    import keras
    import tensorflow as tf

    from shardkit.train import keras_compat
    from shardkit.train.callbacks import ReaderPositionBackup, read_position

    keras_compat.exact_last_execution()
    log = str(tmp_path / "rows.log")

    def batch(i: tf.Tensor) -> tuple[dict, tf.Tensor]:
        return {"x": tf.ones((2, 1)), "row_id": tf.fill([2], i)}, tf.zeros((2, 1))

    stream = tf.data.Dataset.range(2 * STEPS).map(batch)  # one stream for both epochs, as the trainer's
    inputs = {"x": keras.Input((1,), name="x"), "row_id": keras.Input((), dtype="int64", name="row_id")}
    model = keras.Model(inputs, keras.layers.Dense(1)(RowRecorder(log)(inputs["x"], inputs["row_id"])))
    model.compile("sgd", "mse", steps_per_execution=3)
    seen: dict[str, list] = {"batch_ends": [], "positions": [], "trained": []}
    backup = ReaderPositionBackup(str(tmp_path / "backup"), STEPS, save_freq=2)

    def batch_end(batch: int, logs: dict) -> None:
        seen["batch_ends"].append(batch)
        position = read_position(str(tmp_path / "backup"))
        seen["positions"].append(position and (position["epoch"], position["step"]))

    record = keras.callbacks.LambdaCallback(on_train_batch_end=batch_end,
                                            on_epoch_end=lambda e, logs: seen["trained"].append(read_log(log)))
    model.fit(stream, epochs=2, steps_per_epoch=STEPS, shuffle=False, verbose=1, callbacks=[backup, record])
    out = capsys.readouterr()
    assert [[int(ids[0]) for ids in rows] for rows in seen["trained"]] == [list(range(STEPS)), list(range(2 * STEPS))]
    assert seen["batch_ends"] == [2, 5, 6] * 2
    assert seen["positions"] == [(0, 3), (0, 6), (0, 6), (1, 3), (1, 6), (1, 6)]  # never an epoch's last step
    assert f"{STEPS}/{STEPS}" in out.out and f"{STEPS + 2}/{STEPS}" not in out.out and "ran out of data" not in out.err


def test_auto_is_one_on_cpu_and_aims_for_50_ms_calls_on_accelerators() -> None:
    def never() -> float:
        raise AssertionError("no probe on CPU")

    assert pacing.resolve("auto", "tensorflow", False, never, 100) == 1
    assert pacing.resolve("auto", "jax", True, lambda: 0.002, 100) == 25  # 25 x 2 ms = 50 ms
    assert pacing.resolve("auto", "jax", True, lambda: 0.002, 7) == 7  # never more than an epoch
    assert pacing.resolve("auto", "tensorflow", True, lambda: 0.2, 100) == 1
    assert pacing.resolve("auto", "torch", True, never, 100) == 1
    assert pacing.resolve(3, "jax", False, never, 100) == 3


@pytest.mark.parametrize("value, message", [
    ("0", "argument --steps-per-execution: expected a positive number of steps or 'auto', got '0'"),
    ("fast", "argument --steps-per-execution: expected a positive number of steps or 'auto', got 'fast'"),
])
def test_a_bad_steps_per_execution_is_a_usage_error(value: str, message: str, knots: str, tmp_path: Path,
                                                     capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_:
        cli.main(["fit", *_args(knots, tmp_path / "run", "--steps-per-execution", value)])
    assert exit_.value.code == 2
    assert capsys.readouterr().err.strip().splitlines()[-1] == (
        f"shardkit-train fit: error: {message} (see shardkit-train fit --help)"
    )
    assert not (tmp_path / "run").exists()
