"""fit/evaluate on the tensorflow, jax and torch Keras backends, and --steps-per-execution: exact epochs, a
resume at a step that is not a multiple of the steps per call, per-batch callbacks and the progress bar; on
jax and torch also early stopping across a resume, evaluate, the run's files and mixed precision.

Each backend run is a real ``shardkit-train fit`` in a subprocess (Keras picks its backend once per process) on
a tiny knot dataset: 96 training examples = 7 steps of 14, so 3 steps per call do not divide the epoch. jax and
torch (the CPU build) are in the test extra; the finished one-epoch run of each backend is trained once per
module (``finished``) and shared by the tests that only read it.
"""

from __future__ import annotations

import importlib.metadata
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Callable

import numpy as np
import pytest

from datasets import knots_dataset
from shardkit.train import cli, pacing, report
from test_train_fit import _env, _train
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


# how each backend is asked for, and the steps per call of its finished and resumed runs: 3, which does not
# divide the epoch's 7 steps, or on torch (one step per call) auto
BACKEND_ARGS = {"tensorflow": [], "jax": ["--backend", "jax", "--logical-cpus", "2"], "torch": ["--backend", "torch"]}
CALLS = {"tensorflow": "3", "jax": "3", "torch": "auto"}


@pytest.fixture(scope="module")
def knots(tmp_path_factory: pytest.TempPathFactory) -> str:
    return knots_dataset(tmp_path_factory, n_per_class=40, size=24, num_shards=2)


@pytest.fixture(scope="module")
def finished(knots: str, tmp_path_factory: pytest.TempPathFactory) -> Callable[[str], tuple[Path, str]]:
    """The uninterrupted one-epoch run of a backend, trained once for the module: (its directory, its stderr).
    Tests may add evaluations to it, nothing else."""
    runs: dict[str, tuple[Path, str]] = {}

    def run(backend: str) -> tuple[Path, str]:
        if backend not in runs:
            out = tmp_path_factory.mktemp(f"finished-{backend}") / "run"
            done = _train(_args(knots, out, *BACKEND_ARGS[backend], "--steps-per-execution", CALLS[backend]))
            assert done.returncode == 0, done.stderr[-3000:]
            assert f"{STEPS}/{STEPS} - " in done.stdout and "ran out of data" not in done.stderr, done.stdout
            runs[backend] = out, done.stderr
        return runs[backend]

    return run


def _args(dataset: str, out: Path, *extra: str) -> list[str]:
    return [dataset, "--model", TINY, "--epochs", "1", "--batch-size", "14", "--out", str(out), "--backup-every", "4",
            "--patience", "0", "--verbose", "2", "--no-tensorboard", *extra]


def _assert_exact_resume(dataset: str, tmp_path: Path, backend: str, whole: Path) -> None:
    """The same run as ``whole`` (``finished``), killed at step 4 (one step per call) and resumed at the
    backend's steps per call (3 where it can), ends with a byte-identical history.csv and the same test metrics."""
    crashed = tmp_path / "crashed"
    _fit_killed_mid_epoch(_args(dataset, crashed, *BACKEND_ARGS[backend], "--steps-per-execution", "1"), crashed, epoch=0)
    position = json.loads((crashed / "backup" / "training_metadata.json").read_text())
    assert (position["epoch"], position["step"]) == (0, 4)  # not a multiple of 3
    resumed = _train(_args(dataset, crashed, *BACKEND_ARGS[backend], "--steps-per-execution", CALLS[backend]))
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert f"resuming from backup at epoch 1, step 4/{STEPS}" in resumed.stderr
    assert "3/3 - " in resumed.stdout and "ran out of data" not in resumed.stderr, resumed.stdout
    assert (crashed / "history.csv").read_text() == (whole / "history.csv").read_text()
    a, b = (json.loads((d / "metrics.json").read_text()) for d in (whole, crashed))
    assert a["test"] == b["test"] and a["epochs_run"] == b["epochs_run"] == 1
    assert a["steps_per_execution"] == b["steps_per_execution"]


def test_steps_per_execution_3_resumes_bit_identically_at_a_step_that_is_not_a_multiple(
    knots: str, tmp_path: Path, finished: Callable[[str], tuple[Path, str]]
) -> None:
    whole, _ = finished("tensorflow")
    _assert_exact_resume(knots, tmp_path, "tensorflow", whole)
    metrics = json.loads((whole / "metrics.json").read_text())
    assert metrics["steps_per_execution"] == 3 and metrics["backend"] == "tensorflow"


def test_jax_trains_data_parallel_resumes_exactly_and_records_its_backend(
    knots: str, tmp_path: Path, capsys: pytest.CaptureFixture[str], finished: Callable[[str], tuple[Path, str]]
) -> None:
    whole, err = finished("jax")
    _assert_exact_resume(knots, tmp_path, "jax", whole)
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
    evaluation = json.loads((whole / f"evaluation_test_{metrics['dataset_id']}.json").read_text())
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


def test_torch_trains_on_one_device_and_refuses_several_steps_per_call(
    knots: str, tmp_path: Path, finished: Callable[[str], tuple[Path, str]]
) -> None:
    """(A mid-epoch resume on torch, bit-identical, is in the early-stopping test below: one step per call
    leaves no step that is not a multiple of it.)"""
    whole, err = finished("torch")
    assert "--steps-per-execution auto: 1 step(s) per call (on CPU)" in err and "Keras backend torch" in err
    metrics = json.loads((whole / "metrics.json").read_text())
    assert (metrics["backend"], metrics["strategy"], metrics["epochs_run"], metrics["steps_per_execution"]) == ("torch", "OneDevice", 1, 1)
    assert metrics["backend_version"] == importlib.metadata.version("torch")

    refused = _train(_args(knots, tmp_path / "other", "--backend", "torch", "--steps-per-execution", "3"))
    assert refused.returncode == 2 and "Traceback" not in refused.stderr
    assert refused.stderr.strip().splitlines()[-1] == (
        "shardkit-train: error: --steps-per-execution 3: Keras on the torch backend runs one train step per call; "
        "use 1 or auto, or --backend jax/tensorflow"
    )
    assert not (tmp_path / "other").exists()


@pytest.mark.parametrize("backend", ["jax", "torch"])
def test_early_stopping_keeps_its_best_and_patience_across_a_resume(backend: str, knots: str, tmp_path: Path) -> None:
    """Killed at step 4 of the epoch after which it stops early (its best and the epoch waited since are in the
    history only) and resumed, a run stops after the same epoch, keeps the same best epoch's weights and ends
    with the same history (bit for bit) and test metrics as the run that was never interrupted. At this
    learning rate the tiny CNN's val_loss stops improving within a few epochs."""
    common = [knots, "--model", TINY, "--epochs", "6", "--batch-size", "14", "--patience", "2", "--learning-rate", "0.05",
              "--backup-every", "4", "--verbose", "0", "--no-tensorboard", *BACKEND_ARGS[backend]]
    whole, crashed = tmp_path / "whole", tmp_path / "crashed"
    done = _train([*common, "--out", str(whole)])
    assert done.returncode == 0, done.stderr[-3000:]
    history = report.read_history(str(whole / "history.csv"))
    stopped, best = len(history["epoch"]), int(np.argmin(history["val_loss"])) + 1
    assert stopped < 6 and stopped - best == 2, history  # stopped early, two epochs after its best
    stop = (f"early stopping after epoch {stopped}: val_loss has not improved on {min(history['val_loss']):.5f} "
            f"(epoch {best}) for 2 epoch(s); keeping epoch {best}'s weights")
    assert stop in done.stderr

    _fit_killed_mid_epoch([*common, "--out", str(crashed)], crashed, epoch=stopped - 1)
    resumed = _train([*common, "--out", str(crashed)])
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert f"resuming from backup at epoch {stopped}, step 4/{STEPS}" in resumed.stderr and stop in resumed.stderr
    assert (crashed / "history.csv").read_text() == (whole / "history.csv").read_text()
    a, b = (json.loads((d / "metrics.json").read_text()) for d in (whole, crashed))
    assert a["test"] == b["test"] and (a["best_epoch"], a["epochs_run"]) == (b["best_epoch"], b["epochs_run"]) == (best, stopped)


def test_evaluate_on_jax_and_torch_gives_tensorflows_test_metrics(
    knots: str, finished: Callable[[str], tuple[Path, str]], capsys: pytest.CaptureFixture[str]
) -> None:
    """``shardkit-train evaluate --backend jax`` and ``--backend torch`` of a run trained on TensorFlow: the
    test metrics, the confusion matrix and every predicted class are TensorFlow's (the loss to float rounding),
    and each evaluation says which backend made it."""
    run, _ = finished("tensorflow")
    dataset_id = json.loads((run / "metrics.json").read_text())["dataset_id"]
    evaluation, predictions = run / f"evaluation_test_{dataset_id}.json", run / f"predictions_test_{dataset_id}.npz"
    results = {}
    capsys.readouterr()
    for backend in ("tensorflow", "jax", "torch"):
        if backend == "tensorflow":  # this process' backend
            assert cli.main(["evaluate", str(run), knots]) == 0
            printed = capsys.readouterr().out
        else:
            done = subprocess.run([sys.executable, "-m", "shardkit.train", "evaluate", str(run), knots, "--backend", backend],
                                  env=_env(), capture_output=True, text=True, timeout=300)
            assert done.returncode == 0 and "Traceback" not in done.stderr, done.stderr[-3000:]
            printed = done.stdout
        with np.load(predictions) as saved:
            results[backend] = json.loads(evaluation.read_text()), dict(saved), json.loads(printed)
    tf_eval, tf_predictions, _ = results.pop("tensorflow")
    assert tf_eval["examples"] == 12 and np.asarray(tf_eval["confusion_matrix"]).sum() == 12
    for backend, (eval_, predicted, printed) in results.items():
        version = importlib.metadata.version(backend)
        assert (eval_["backend"], eval_["backend_version"], printed["backend"]) == (backend, version, backend)
        assert (eval_["examples"], eval_["accuracy"], eval_["confusion_matrix"]) == (
            tf_eval["examples"], tf_eval["accuracy"], tf_eval["confusion_matrix"]), backend
        assert eval_["loss"] == pytest.approx(tf_eval["loss"], abs=1e-5), backend
        assert sorted(predicted) == sorted(tf_predictions), backend
        for name in ("row_id", "label", "predicted"):
            assert np.array_equal(predicted[name], tf_predictions[name]), (backend, name)


def test_every_backend_writes_the_same_run_files_and_records_itself(finished: Callable[[str], tuple[Path, str]]) -> None:
    """A finished run on jax and on torch holds the files a TensorFlow run holds (plots of the same size,
    metrics.json and config.json with the same keys, history.csv with the same columns), each naming its backend
    and that backend's version."""
    import tensorflow as tf

    made: dict[str, dict[str, object]] = {}
    for backend in BACKEND_ARGS:
        run, _ = finished(backend)
        metrics = json.loads((run / "metrics.json").read_text())
        config = json.loads((run / "config.json").read_text())
        version = tf.__version__ if backend == "tensorflow" else importlib.metadata.version(backend)
        assert (metrics["backend"], metrics["backend_version"], config["backend"], config["backend_version"]) == (
            backend, version, backend, version)
        files = sorted(p.name for p in run.iterdir() if metrics["dataset_id"] not in p.name)  # evaluations left out
        with np.load(run / "predictions_test.npz") as predictions:
            arrays = sorted(predictions)
        made[backend] = {
            "files": files, "metrics": _keys(metrics), "config": sorted(config), "predictions": arrays,
            "history": (run / "history.csv").read_text().splitlines()[0],
            "plots": {name: _png_size(run / name) for name in files if name.endswith(".png")},
        }
    assert made["tensorflow"]["files"] == ["best.weights.h5", "config.json", "confusion_test.png", "history.csv", "metrics.json",
                                           "model.keras", "model.weights.h5", "predictions_test.npz", "training_curves.png"]
    assert made["jax"] == made["tensorflow"] and made["torch"] == made["tensorflow"]


@pytest.mark.parametrize("backend", ["jax", "torch"])
def test_mixed_precision_trains_on_cpu(backend: str, knots: str, tmp_path: Path) -> None:
    """--precision mixed_float16 on jax and torch on CPU: the run trains with float16 layers (the loss finite),
    and says that mixed precision pays only on GPUs/TPUs."""
    import zipfile

    out = tmp_path / "run"
    done = _train(_args(knots, out, *BACKEND_ARGS[backend], "--precision", "mixed_float16"))
    assert done.returncode == 0 and "Traceback" not in done.stderr, done.stderr[-3000:]
    assert ("shardkit-train: --precision mixed_float16 on CPU: computed in float16, but it pays only on GPUs/TPUs "
            "(slower here)") in done.stderr
    history = report.read_history(str(out / "history.csv"))
    assert history["epoch"] == [1] and np.isfinite(history["loss"] + history["val_loss"]).all()
    saved = json.loads(zipfile.ZipFile(out / "model.keras").read("config.json"))
    policies = {layer["class_name"]: layer["config"]["dtype"] for layer in saved["config"]["layers"]}
    assert policies["Conv2D"]["config"]["name"] == policies["Dense"]["config"]["name"] == "mixed_float16"
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["backend"] == backend and metrics["test"]["examples"] == 12


def _keys(value: object, path: str = "") -> list[str]:
    """Every key path of a JSON object (``test.confusion_matrix``, ...)."""
    if not isinstance(value, dict):
        return []
    return sorted(k for key, v in value.items() for k in [f"{path}{key}", *_keys(v, f"{path}{key}.")])


def _png_size(path: Path) -> tuple[int, int]:
    """A PNG's width and height, from its header (which must be a PNG's)."""
    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n" and data[12:16] == b"IHDR", path
    return int.from_bytes(data[16:20], "big"), int.from_bytes(data[20:24], "big")


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
