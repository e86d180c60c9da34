"""shardkit-train fit/evaluate end to end: accuracy, exact epochs through Keras, strategies, kill/resume, errors."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from datasets import knots_dataset, proteins_dataset
from shardkit import spec
from shardkit.train import cli, dataset as reader
from test_train_recorder import read_log

TESTS = os.path.dirname(os.path.abspath(__file__))
RECORDER = "test_train_recorder:build"


@pytest.fixture(scope="module")
def knots(tmp_path_factory: pytest.TempPathFactory) -> str:
    return knots_dataset(tmp_path_factory, n_per_class=200, size=32, num_shards=4)


def _env(**extra: str) -> dict[str, str]:
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([TESTS, os.environ.get("PYTHONPATH", "")]), TF_CPP_MIN_LOG_LEVEL="2")
    env.update(extra)
    return env


def _train(args: list[str], timeout: int = 300, **env: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "shardkit.train", "fit", *args], env=_env(**env), capture_output=True, text=True, timeout=timeout
    )


def _epochs(log: list[np.ndarray], steps: int) -> list[np.ndarray]:
    return [np.concatenate(log[e * steps : (e + 1) * steps]) for e in range(len(log) // steps)]


def test_class_sorted_knots_learn_and_evaluate(knots: str, tmp_path: Path, capsys) -> None:
    out = tmp_path / "run"
    rc = cli.main(["fit", knots, "--model", "knot-cnn", "--epochs", "8", "--batch-size", "32", "--out", str(out), "--verbose", "2"])
    assert rc == 0
    captured = capsys.readouterr()
    assert "15/15" in captured.out and "Unknown" not in captured.out and "ran out of data" not in captured.err
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["validation"]["accuracy"] >= 0.9  # class-sorted input must not collapse the model to one class
    assert metrics["test"]["accuracy"] >= 0.9 and metrics["test"]["examples"] == 60
    assert np.asarray(metrics["test"]["confusion_matrix"]).sum() == 60
    for name in ("history.csv", "training_curves.png", "confusion_test.png", "model.keras", "best.weights.h5", "config.json"):
        assert (out / name).stat().st_size > 0, name
    assert not (out / "backup").exists()  # removed after a completed run
    assert os.listdir(out / "logs")  # TensorBoard

    assert cli.main(["evaluate", str(out), knots, "--split", "validation"]) == 0
    evaluation = json.loads((out / f"evaluation_validation_{spec.read_metadata(knots).dataset_id}.json").read_text())
    assert evaluation["examples"] == 60 and evaluation["accuracy"] >= 0.9


def test_keras_sees_each_example_once_per_epoch_and_the_whole_validation(knots: str, tmp_path: Path) -> None:
    ds = reader.open_dataset(knots)
    log = tmp_path / "rows.log"
    r = _train([knots, "--model", RECORDER, "--epochs", "2", "--batch-size", "50", "--out", str(tmp_path / "run"), "--verbose", "2"], SHARDKIT_ROW_LOG=str(log))
    assert r.returncode == 0, r.stderr[-3000:]
    assert "10/10" in r.stdout and "ran out of data" not in r.stderr  # 480 examples = 9 x 50 + 30
    train_ids = sorted(reader.read_row_ids(ds, "train").tolist())
    batches = read_log(str(log))
    assert [len(b) for b in batches[:10]] == [50] * 9 + [30]
    for ids in _epochs(batches, 10):
        assert sorted(ids.tolist()) == train_ids
    evals = read_log(str(log) + ".eval")
    val_ids = reader.read_row_ids(ds, "validation").tolist()
    for e in range(2):  # validation after each epoch: the whole split, in order
        assert np.concatenate(evals[e * 2 : (e + 1) * 2]).tolist() == val_ids


def test_mirrored_over_two_cpu_devices(knots: str, tmp_path: Path) -> None:
    log = tmp_path / "rows.log"
    out = tmp_path / "run"
    args = [knots, "--model", RECORDER, "--epochs", "1", "--batch-size", "34", "--out", str(out), "--strategy", "mirrored", "--logical-cpus", "2", "--verbose", "2"]
    r = _train(args, SHARDKIT_ROW_LOG=str(log))
    assert r.returncode == 0, r.stderr[-3000:]
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["replicas"] == 2 and metrics["strategy"] == "MirroredStrategy"
    batches = read_log(str(log))
    assert len(batches) == 2 * 15 and max(len(b) for b in batches) == 17  # global 34 = 2 x 17
    assert sorted(np.concatenate(batches).tolist()) == sorted(reader.read_row_ids(knots, "train").tolist())


def _free_ports(n: int) -> list[int]:
    sockets = [socket.socket() for _ in range(n)]
    for s in sockets:
        s.bind(("127.0.0.1", 0))
    ports = [s.getsockname()[1] for s in sockets]
    for s in sockets:
        s.close()
    return ports


@pytest.mark.slow
def test_multiworker_on_loopback_trains_on_disjoint_data(knots: str, tmp_path: Path) -> None:
    workers = [f"127.0.0.1:{p}" for p in _free_ports(2)]
    out = tmp_path / "run"
    procs = []
    for i in range(2):
        tf_config = json.dumps({"cluster": {"worker": workers}, "task": {"type": "worker", "index": i}})
        args = [knots, "--model", RECORDER, "--epochs", "2", "--batch-size", "32", "--out", str(out), "--strategy", "multiworker", "--verbose", "2"]
        procs.append(
            subprocess.Popen(
                [sys.executable, "-m", "shardkit.train", "fit", *args],
                env=_env(TF_CONFIG=tf_config, SHARDKIT_ROW_LOG=str(tmp_path / f"rows-{i}.log")),
                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
            )
        )
    results = [p.communicate(timeout=400) for p in procs]
    for p, (out_text, err) in zip(procs, results):
        assert p.returncode == 0, err[-3000:]
        assert "ran out of data" not in (out_text + err).lower()
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["workers"] == 2 and metrics["plan"]["policy"] == "FILE" and metrics["epochs_run"] == 2
    assert (out / "worker-1" / "metrics.json").exists()  # the non-chief writes only into its own scratch dir
    steps = metrics["plan"]["steps_per_epoch"]
    logs = [read_log(str(tmp_path / f"rows-{i}.log")) for i in range(2)]
    train_ids = set(reader.read_row_ids(knots, "train").tolist())
    for e in range(2):
        a, b = (set(_epochs(log, steps)[e].tolist()) for log in logs)
        assert not a & b  # the workers read disjoint data
        assert a | b <= train_ids and len(a | b) == metrics["plan"]["examples_per_epoch"]


def test_sigkill_mid_epoch_resumes_with_exactly_the_unseen_examples(knots: str, tmp_path: Path) -> None:
    out = tmp_path / "run"
    args = [knots, "--model", RECORDER, "--epochs", "3", "--batch-size", "32", "--out", str(out), "--backup-every", "4", "--verbose", "2"]
    first = _train(args, SHARDKIT_ROW_LOG=str(tmp_path / "a.log"), SHARDKIT_KILL_AFTER="22")  # epoch 2, step 7
    assert first.returncode == -9
    assert "ran out of data" not in (first.stdout + first.stderr).lower()
    position = json.loads((out / "backup" / "training_metadata.json").read_text())
    assert position["epoch"] == 1 and 0 < position["step"] < 15
    k = position["step"]

    second = _train(args, SHARDKIT_ROW_LOG=str(tmp_path / "b.log"))
    assert second.returncode == 0, second.stderr[-3000:]
    assert f"resuming from backup at epoch 2, step {k}/15" in second.stderr
    assert f"{15 - k}/{15 - k}" in second.stdout and "ran out of data" not in (second.stdout + second.stderr).lower()
    before, after = read_log(str(tmp_path / "a.log")), read_log(str(tmp_path / "b.log"))
    interrupted = np.concatenate(before[15 : 15 + k] + after[: 15 - k])
    assert sorted(interrupted.tolist()) == sorted(reader.read_row_ids(knots, "train").tolist())
    assert len(after) == (15 - k) + 15
    history = (out / "history.csv").read_text().strip().splitlines()
    assert [line.split(",")[0] for line in history[1:]] == ["1", "2", "3"]  # numbered from 1, as best_epoch
    assert json.loads((out / "metrics.json").read_text())["resumed_from"]["step"] == k


def test_spec_the_model_cannot_take(tmp_path_factory: pytest.TempPathFactory, knots: str, tmp_path: Path, capsys) -> None:
    proteins = proteins_dataset(tmp_path_factory, n=400, max_length=80, num_shards=2)
    rc = cli.main(["fit", proteins, "--model", "knot-cnn", "--epochs", "1", "--batch-size", "8", "--out", str(tmp_path / "a")])
    assert rc == 2 and "knot-cnn needs an image feature" in capsys.readouterr().err
    rc = cli.main(["fit", knots, "--model", "test_train_fit:wrong_size_model", "--epochs", "1", "--batch-size", "8", "--out", str(tmp_path / "b")])
    err = capsys.readouterr().err
    assert rc == 2 and f"{knots}: model" in err and "(64, 64, 3)" in err and "(32, 32, 3)" in err


def wrong_size_model(metadata: spec.Metadata):
    import keras

    inputs = keras.Input((64, 64, 3), dtype="uint8", name="image")
    x = keras.layers.GlobalAveragePooling2D()(keras.layers.Rescaling(1 / 255)(inputs))
    return keras.Model(inputs, keras.layers.Dense(3, activation="softmax")(x))


def test_no_metadata_stops_training_naming_the_file(knots: str, tmp_path: Path, capsys) -> None:
    """(Damaged and truncated shards, with and without --skip-corrupt: tests/test_faults.py.)"""
    import shutil

    broken = tmp_path / "broken"
    shutil.copytree(knots, broken)
    os.remove(broken / spec.METADATA_FILE)
    rc = cli.main(["fit", str(broken), "--model", "knot-cnn", "--epochs", "1", "--batch-size", "32", "--out", str(tmp_path / "a")])
    assert rc == 2 and f"{broken}/metadata.json: missing" in capsys.readouterr().err


def test_protein_and_sequence_presets_train(tmp_path_factory: pytest.TempPathFactory, tmp_path: Path) -> None:
    from datasets import features_dataset

    proteins = proteins_dataset(tmp_path_factory, n=400, max_length=80, num_shards=2)
    features = features_dataset(tmp_path_factory, n=100, timesteps=10, dim=16)
    common = ["--epochs", "2", "--batch-size", "32", "--verbose", "0", "--no-tensorboard"]
    assert cli.main(["fit", proteins, "--model", "protein-cnn", "--sequence-encoding", "codes", "--out", str(tmp_path / "p"), *common]) == 0
    assert cli.main(["fit", features, "--model", "sequence-lstm", "--out", str(tmp_path / "f"), *common]) == 0
    p = json.loads((tmp_path / "p" / "metrics.json").read_text())
    f = json.loads((tmp_path / "f" / "metrics.json").read_text())
    assert np.isfinite(p["test"]["loss"]) and len(p["test"]["confusion_matrix"]) == 7
    assert np.isfinite(f["test"]["loss"]) and len(f["test"]["confusion_matrix"]) == 2  # one sigmoid unit, 2 classes
