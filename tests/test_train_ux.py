"""shardkit-train's user-facing output: one-line errors for user mistakes, --model imported from the working
directory, logits models, and no TensorFlow log lines on successful runs unless -v/--log."""

from __future__ import annotations

import dataclasses
import json
import logging
import math
import os
import re
import shutil
import subprocess
import time
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

from datasets import knots_dataset
from shardkit import spec
from shardkit.train import cli, models
from shardkit.train import dataset as reader
from shardkit.train import opening

SHARDKIT_TRAIN = os.path.join(os.path.dirname(sys.executable), "shardkit-train")
# TensorFlow/absl lines that must not reach a user on a run that succeeds.
NOISE = re.compile(
    r"oneDNN|absl::InitializeLog|Local rendezvous|GeneratorDatasetOp|cache_dataset_ops|did not fully read the dataset"
    r"|tf_record_iterator|deprecat|retracing|^[IWE]\d{4} \d\d:\d\d:\d\d",
    re.MULTILINE,
)
USER_MODELS = '''
import keras

def build(metadata):
    f = metadata.features[0]
    inputs = keras.Input(f.shape, dtype="uint8", name=f.name)
    x = keras.layers.GlobalAveragePooling2D()(keras.layers.Rescaling(1 / 255)(inputs))
    return keras.Model(inputs, keras.layers.Dense(metadata.label.num_classes, activation="softmax")(x))
'''


@pytest.fixture(scope="module")
def knots(tmp_path_factory: pytest.TempPathFactory) -> str:
    return knots_dataset(tmp_path_factory, n_per_class=40, size=24, num_shards=2)


@pytest.fixture(scope="module")
def small_knots(tmp_path_factory: pytest.TempPathFactory) -> str:
    """16x16 images: below knot-cnn's minimum of 18."""
    return knots_dataset(tmp_path_factory, n_per_class=10, size=16, num_shards=1)


def _env() -> dict[str, str]:
    """The user's environment: no PYTHONPATH to tests/ or the working directory, no TensorFlow log level."""
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "TF_CPP_MIN_LOG_LEVEL")}
    return env


def _cli(args: list[str], cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run([SHARDKIT_TRAIN, *args], cwd=cwd, env=_env(), capture_output=True, text=True, timeout=300)


@pytest.fixture(scope="module")
def user_run(knots: str, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, subprocess.CompletedProcess]:
    """``fit --model mymodels:build`` by the console script, run in a directory holding mymodels.py."""
    work = tmp_path_factory.mktemp("work")
    (work / "mymodels.py").write_text(USER_MODELS)
    done = _cli(["fit", knots, "--model", "mymodels:build", "--epochs", "1", "--batch-size", "8", "--out", "run",
                 "--cache-validation", "--verbose", "0", "--no-tensorboard"], work)
    return work, done


def _one_line_error(rc: int, err: str) -> str:
    """The error line; before it at most shardkit's own notes (evaluate says which dataset the run was trained on)."""
    lines = err.strip().splitlines()
    assert rc == 2 and "Traceback" not in err, err
    assert lines[-1].startswith("shardkit-train: error: ") and len(lines) <= 2, err
    assert all(line.startswith("shardkit-train: ") and "error" not in line for line in lines[:-1]), err
    return lines[-1]


def test_user_model_imports_from_the_working_directory_and_runs_quietly(
    user_run: tuple[Path, subprocess.CompletedProcess], knots: str
) -> None:
    work, fit = user_run
    assert fit.returncode == 0, fit.stderr
    assert json.loads((work / "run" / "metrics.json").read_text())["test"]["examples"] == 12
    evaluate = _cli(["evaluate", "run", knots], work)
    verify = _cli(["verify", "--quiet", knots], work)
    assert evaluate.returncode == 0 and verify.returncode == 0, evaluate.stderr + verify.stderr
    for done in (fit, evaluate, verify):
        assert not NOISE.search(done.stdout + done.stderr), done.stdout + done.stderr
    assert fit.stderr.splitlines()[-1].startswith("shardkit-train: test: accuracy")
    assert verify.stdout.startswith("OK: ") and not verify.stderr


def test_model_not_importable_from_here_names_module_and_path(
    user_run: tuple[Path, subprocess.CompletedProcess], knots: str, tmp_path: Path, capsys, monkeypatch
) -> None:
    work, _ = user_run
    monkeypatch.chdir(tmp_path)  # a directory without mymodels.py, as a user in the wrong place
    monkeypatch.setattr(sys, "path", [p for p in sys.path if p != str(work)])
    monkeypatch.delitem(sys.modules, "mymodels", raising=False)
    rc = cli.main(["evaluate", str(work / "run"), knots])
    assert _one_line_error(rc, capsys.readouterr().err) == (
        f"shardkit-train: error: --model mymodels:build: no module named 'mymodels' (looked for {tmp_path}/mymodels.py "
        "and on PYTHONPATH); run from the directory that holds it, or add that directory to PYTHONPATH"
    )


def test_evaluate_on_a_dataset_of_another_shape_names_both_sides(
    user_run: tuple[Path, subprocess.CompletedProcess], knots: str, small_knots: str, capsys, monkeypatch
) -> None:
    work, _ = user_run
    monkeypatch.chdir(work)
    monkeypatch.setattr(sys, "path", list(sys.path))
    monkeypatch.delitem(sys.modules, "mymodels", raising=False)
    rc = cli.main(["evaluate", "run", small_knots])
    line = _one_line_error(rc, capsys.readouterr().err)
    assert f"run run (--model mymodels:build) was trained on input (24, 24, 3) with 3 output(s) from {knots}; " in line
    assert f"{small_knots} gives it input (16, 16, 3) and 3 output(s)" in line
    assert not (work / "run" / "evaluation_test.json").exists() or json.loads(
        (work / "run" / "evaluation_test.json").read_text())["dataset"] == os.path.abspath(knots)


def test_knot_cnn_run_evaluated_on_images_it_cannot_take(knots: str, small_knots: str, tmp_path: Path, capsys) -> None:
    run = str(tmp_path / "run")
    assert cli.main(["fit", knots, "--model", "knot-cnn", "--epochs", "1", "--batch-size", "16", "--out", run,
                     "--verbose", "0", "--no-tensorboard"]) == 0
    capsys.readouterr()
    line = _one_line_error(cli.main(["evaluate", run, small_knots]), capsys.readouterr().err)
    assert line == (
        f"shardkit-train: error: run {run} (--model knot-cnn) was trained on input (24, 24, 3) with 3 output(s) from "
        f"{knots}; {small_knots}: model knot-cnn needs images of at least 18x18 pixels; this dataset's images are "
        "16x16 (convert them larger, or pass your own --model pkg.module:build)"
    )


def returns_none(metadata: spec.Metadata) -> None:
    return None


def raises(metadata: spec.Metadata):
    return metadata.no_such_field


def relu_output(metadata: spec.Metadata):
    import keras

    inputs = keras.Input(metadata.features[0].shape, dtype="uint8", name="image")
    x = keras.layers.GlobalAveragePooling2D()(keras.layers.Rescaling(1 / 255)(inputs))
    return keras.Model(inputs, keras.layers.Dense(3, activation="relu", name="scores")(x))


def unbuilt(metadata: spec.Metadata):
    import keras

    return keras.Sequential([keras.layers.Dense(3, activation="softmax")])


def zero_logits(metadata: spec.Metadata):
    """Outputs logits that are all zero: the loss is exactly log(num_classes) if taken as logits."""
    import keras

    inputs = keras.Input(metadata.features[0].shape, dtype="uint8", name="image")
    x = keras.layers.GlobalAveragePooling2D()(keras.layers.Rescaling(1 / 255)(inputs))
    out = keras.layers.Dense(metadata.label.num_classes, kernel_initializer="zeros", name="logits")(x)
    return keras.Model(inputs, out)


@pytest.mark.parametrize("model, message", [
    ("nonexistent.module:build", "--model nonexistent.module:build: no module named 'nonexistent' (looked for "
                                 "{cwd}/nonexistent.py and on PYTHONPATH); run from the directory that holds it, or "
                                 "add that directory to PYTHONPATH"),
    ("json:nothing", "--model json:nothing: {json} has no attribute 'nothing'"),
    ("test_train_ux:returns_none", "--model test_train_ux:returns_none: returns_none(metadata) returned None, "
                                   "not a keras.Model"),
    ("test_train_ux:raises", "--model test_train_ux:raises: raises(metadata) raised AttributeError: 'Metadata' "
                             "object has no attribute 'no_such_field' ({here}:"),
    ("test_train_ux:relu_output", "--model test_train_ux:relu_output: the model's last layer 'scores' has activation "
                                  "relu; end it with softmax (or one sigmoid unit for two classes), or with no "
                                  "activation to output logits"),
    ("test_train_ux:unbuilt", "--model test_train_ux:unbuilt: unbuilt(metadata) returned a model without defined "
                              "inputs and outputs; build it with keras.Input(...)"),
    ("knotcnn", "--model 'knotcnn': not a preset (knot-cnn, protein-cnn, sequence-lstm, tabular) nor pkg.module:callable"),
    ("protein-cnn", "{knots}: model protein-cnn needs a sequence feature of rank 1, but this dataset's feature "
                    "'image' is an image of shape (24, 24, 3) (try --model knot-cnn)"),
])
def test_model_mistakes_are_one_line(model: str, message: str, knots: str, tmp_path: Path, capsys) -> None:
    import json as json_module

    rc = cli.main(["fit", knots, "--model", model, "--epochs", "1", "--batch-size", "8", "--out", str(tmp_path / "r")])
    line = _one_line_error(rc, capsys.readouterr().err)
    expected = message.format(json=json_module.__file__, here=__file__, knots=knots, cwd=os.getcwd())
    assert line.startswith("shardkit-train: error: " + expected), line


def test_knot_cnn_refuses_images_below_its_minimum(small_knots: str, tmp_path: Path, capsys) -> None:
    rc = cli.main(["fit", small_knots, "--model", "knot-cnn", "--epochs", "1", "--batch-size", "8", "--out",
                   str(tmp_path / "r")])
    assert _one_line_error(rc, capsys.readouterr().err) == (
        f"shardkit-train: error: {small_knots}: model knot-cnn needs images of at least 18x18 pixels; this dataset's "
        "images are 16x16 (convert them larger, or pass your own --model pkg.module:build)"
    )
    # and 18x18 really is the smallest the preset builds on
    meta = spec.read_metadata(small_knots)
    image = dataclasses.replace(meta.features[0], shape=(models.KNOT_CNN_MIN_SIZE,) * 2 + (3,))
    assert models.knot_cnn(dataclasses.replace(meta, features=(image,))).output.shape[-1] == 3


def test_logits_model_trains_with_from_logits(knots: str, tmp_path: Path, capsys) -> None:
    out = tmp_path / "run"
    rc = cli.main(["fit", knots, "--model", "test_train_ux:zero_logits", "--epochs", "1", "--batch-size", "16",
                   "--learning-rate", "1e-9", "--out", str(out), "--verbose", "0", "--no-tensorboard"])
    err = capsys.readouterr().err
    assert rc == 0
    assert ("shardkit-train: the model's last layer 'logits' has no softmax or sigmoid: taking its outputs as logits "
            "(loss with from_logits=True)") in err.splitlines()
    test = json.loads((out / "metrics.json").read_text())["test"]
    assert test["loss"] == pytest.approx(math.log(3), abs=1e-4)  # cross-entropy of softmax(0, 0, 0), not of clipped 0s
    assert 0 < test["accuracy"] <= 1 and np.asarray(test["confusion_matrix"]).sum() == 12


def test_binary_logits_use_a_threshold_of_zero(knots: str) -> None:
    import keras

    meta = spec.read_metadata(knots)
    meta = dataclasses.replace(meta, targets=(dataclasses.replace(meta.label, num_classes=2, names=("a", "b")),))
    inputs = keras.Input((2,))
    model = keras.Model(inputs, keras.layers.Dense(1)(inputs))
    loss, (accuracy,) = models.loss_and_metrics(model, meta)
    assert isinstance(loss, keras.losses.BinaryCrossentropy) and loss.get_config()["from_logits"]
    logits, labels = np.array([[-2.0], [0.3], [3.0]]), np.array([[0], [1], [1]])
    accuracy.update_state(labels, logits)
    assert float(accuracy.result()) == 1.0  # a 0.5 threshold would call the logit 0.3 class 0
    assert float(loss(labels, logits)) == pytest.approx(float(np.mean(np.log1p(np.exp(-np.array([2.0, 0.3, 3.0]))))))
    assert models.predicted_classes(logits, model).tolist() == [0, 1, 1]


def _flip_a_byte(dataset: str, dest: Path, shard: int = 0) -> Path:
    shutil.copytree(dataset, dest)
    path = dest / spec.read_metadata(dataset).splits["train"].shards[shard].path
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0xFF
    path.write_bytes(bytes(data))
    return path


def test_bench_on_a_damaged_shard_names_the_shard_and_record(knots: str, tmp_path: Path, capsys) -> None:
    shard = _flip_a_byte(knots, tmp_path / "flipped")
    good = opening.intact_count(str(shard))
    rc = cli.main(["bench", str(tmp_path / "flipped"), "--batch-size", "8", "--steps", "2", "--warmup", "1"])
    line = _one_line_error(rc, capsys.readouterr().err)
    assert line.startswith(f"shardkit-train: error: bench stopped on a damaged shard: {shard}: record {good} fails its CRC")


def test_skip_corrupt_counts_the_intact_prefix_without_deprecated_reads(knots: str, tmp_path: Path, caplog) -> None:
    from shardkit.train import verify

    shard = _flip_a_byte(knots, tmp_path / "flipped", shard=1)
    caplog.set_level(logging.DEBUG)
    ds = reader.open_dataset(str(tmp_path / "flipped"), skip_corrupt=True)
    meta = spec.read_metadata(knots)
    problem = next(p for p in verify.scan_shard(str(tmp_path / "flipped"), str(shard.relative_to(tmp_path / "flipped")),
                                                meta).problems if p.kind == "corrupt")
    assert ds.lost == {str(shard): meta.splits["train"].shards[1].count - problem.record}
    assert "deprecat" not in caplog.text.lower()


def test_log_flag_shows_tensorflow_but_no_cache_or_deprecation_warnings(knots: str, tmp_path: Path) -> None:
    """-v/--log brings TensorFlow's lines back, and even then shardkit's reads cause no warning: the validation
    cache is filled whole (Keras stops before the end of the stream, and tf.data then discards a partial cache
    and warns), and damaged shards are counted without the deprecated tf_record_iterator."""
    shard = _flip_a_byte(knots, tmp_path / "flipped", shard=1)
    done = _cli(["fit", str(tmp_path / "flipped"), "--model", "knot-cnn", "--epochs", "1", "--batch-size", "2",
                 "--out", "run", "--cache-validation", "--skip-corrupt", "--verbose", "0", "--no-tensorboard", "-v"],
                tmp_path)
    assert done.returncode == 0, done.stderr
    assert re.search(r"^[IW]\d{4} ", done.stderr, re.MULTILINE), done.stderr
    assert f"--skip-corrupt: {shard}: " in done.stderr
    assert "did not fully read the dataset being cached" not in done.stderr
    assert "deprecat" not in done.stderr.lower()


def test_keras_step_retracing_across_models_is_not_reported(capsys) -> None:
    """--repeat builds one model per seed; TensorFlow counts their step functions' traces together."""
    import keras
    import tensorflow as tf
    from tensorflow.python.eager.polymorphic_function import polymorphic_function

    from shardkit.train import quiet

    quiet.configure()
    records: list[str] = []

    class Keep(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            records.append(record.getMessage())

    tf_logger = tf.get_logger()
    handler, level = Keep(), tf_logger.level
    tf_logger.addHandler(handler)
    tf_logger.setLevel(logging.WARNING)  # an in-process conversion earlier in the session raises the root's level
    try:
        def predict_with_new_models() -> None:
            polymorphic_function._frequent_tracing_detector_manager._detectors.clear()  # at most 2 warnings a process
            for _ in range(4):
                inputs = keras.Input((3,))
                model = keras.Model(inputs, keras.layers.Dense(2, activation="softmax")(inputs))
                batches = tf.data.Dataset.from_tensor_slices(np.zeros((5, 3), np.float32)).batch(4)
                model.predict(batches, verbose=0)  # two batch shapes, as fit's test split usually has

        predict_with_new_models()
        assert not [r for r in records if "retracing" in r]
        filters = tf_logger.filters[:]
        for f in filters:
            tf_logger.removeFilter(f)
        try:
            predict_with_new_models()  # without the filter TensorFlow does warn: the test can tell
        finally:
            for f in filters:
                tf_logger.addFilter(f)
        assert [r for r in records if "retracing" in r]
    finally:
        tf_logger.removeHandler(handler)
        tf_logger.setLevel(level)


def test_ctrl_c_during_fit_is_one_line(knots: str, tmp_path: Path) -> None:
    import signal

    proc = subprocess.Popen(
        [SHARDKIT_TRAIN, "fit", knots, "--model", "knot-cnn", "--epochs", "500", "--batch-size", "2", "--out", "run",
         "--verbose", "0", "--no-tensorboard"],
        cwd=tmp_path, env=_env(), stderr=subprocess.PIPE, text=True,
    )
    assert proc.stderr is not None
    first = proc.stderr.readline()  # the plan line: training is about to start
    assert " steps of global batch 2" in first, first
    history = tmp_path / "run" / "history.csv"  # an epoch done: Ctrl-C once training runs (test_lean.py: as it starts)
    deadline = time.time() + 120
    while not history.exists() and proc.poll() is None and time.time() < deadline:
        time.sleep(0.2)
    proc.send_signal(signal.SIGINT)  # one press: fit holds it and acts on it at the next step
    rest = proc.stderr.read()
    assert proc.wait(timeout=120) == 130, rest
    assert rest.strip().splitlines()[-1] == ("shardkit-train: interrupted (rerun the same command to resume from the "
                                             "last backup, if one was written)"), rest
