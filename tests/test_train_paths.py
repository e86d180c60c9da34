"""Documented fit paths: no validation split, uneven replica batches, bit-identical resume, evaluate with the
run's settings, refused arguments, and the history/metrics conventions."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from datasets import features_dataset, knots_dataset, proteins_dataset
from test_train_fit import _env, _train


def _fit_killed_mid_epoch(args: list[str], out: Path, epoch: int = 1) -> int:
    """Run ``fit`` and SIGKILL it as soon as its backup holds a position inside ``epoch`` (0-based): a crash
    between two mid-epoch backups, so the steps since the last backup are lost as in a real one."""
    proc = subprocess.Popen(
        [sys.executable, "-m", "shardkit.train", "fit", *args], env=_env(),
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
    )
    position = out / "backup" / "training_metadata.json"
    deadline = time.monotonic() + 300
    while proc.poll() is None and time.monotonic() < deadline:
        try:
            at = json.loads(position.read_text())
        except (OSError, ValueError):
            at = None
        if at and at["epoch"] == epoch and 0 < at["step"]:
            proc.send_signal(signal.SIGKILL)
            break
        time.sleep(0.002)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == -9, err[-3000:]
    return proc.returncode


def _assert_resume_is_bit_identical(dataset: str, model: str, tmp_path: Path, extra: list[str]) -> None:
    common = [dataset, "--model", model, "--epochs", "2", "--backup-every", "2", "--verbose", "0", "--no-tensorboard", *extra]
    whole, crashed = tmp_path / "whole", tmp_path / "crashed"
    done = _train([*common, "--out", str(whole)])
    assert done.returncode == 0, done.stderr[-3000:]
    _fit_killed_mid_epoch([*common, "--out", str(crashed)], crashed)
    position = json.loads((crashed / "backup" / "training_metadata.json").read_text())
    resumed = _train([*common, "--out", str(crashed)])
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert f"resuming from backup at epoch {position['epoch'] + 1}, step {position['step']}/" in resumed.stderr
    assert (crashed / "history.csv").read_text() == (whole / "history.csv").read_text()
    a, b = (json.loads((d / "metrics.json").read_text()) for d in (whole, crashed))
    assert a["test"] == b["test"] and a["epochs_run"] == b["epochs_run"] == 2
    assert (crashed / "model.weights.h5").exists()


def test_knot_cnn_with_dropout_resumes_bit_identically_after_sigkill(small_knots: str, tmp_path: Path) -> None:
    _assert_resume_is_bit_identical(small_knots, "knot-cnn", tmp_path, ["--batch-size", "8", "--sampling", "balanced"])


def test_protein_cnn_under_mirrored_with_replacement_sampling_resumes_bit_identically(tmp_path_factory, tmp_path: Path) -> None:
    proteins = proteins_dataset(tmp_path_factory, n=120, max_length=40, num_shards=2)
    extra = ["--batch-size", "16", "--sampling", "replacement", "--strategy", "mirrored", "--logical-cpus", "2"]
    _assert_resume_is_bit_identical(proteins, "protein-cnn", tmp_path, extra)


def test_the_backup_holds_the_lstm_and_dropout_generators_of_sequence_lstm(tmp_path_factory) -> None:
    """sequence-lstm draws masks in its LSTM cell and in its Dropout layer: a saved state put back into a fresh
    model (other generator seeds) makes it draw exactly the masks the saved model draws next."""
    import numpy as np

    from shardkit.train import callbacks, models
    from shardkit.train import dataset as reader

    metadata = reader.open_dataset(features_dataset(tmp_path_factory, n=100, timesteps=6, dim=8)).metadata
    model = models.build_model("sequence-lstm", metadata)
    models.compile_model(model, metadata)
    x = np.random.default_rng(0).random((4, 6, 8)).astype("float32")
    model(x, training=True)  # advances the generators
    state = callbacks.training_state(model)
    assert len(state["seed_generators"]) >= 2  # the LSTM's dropout and the Dropout layer
    expected = model(x, training=True).numpy()

    def fresh(restore: bool) -> np.ndarray:
        other = models.build_model("sequence-lstm", metadata)
        other.set_weights(model.get_weights())
        models.compile_model(other, metadata)
        if restore:
            callbacks.restore_state(other, state, "seed_generators", "test")
        return other(x, training=True).numpy()

    assert np.array_equal(fresh(restore=True), expected)
    assert not np.array_equal(fresh(restore=False), expected)


def _knots_split(tmp_path_factory, split: str) -> str:
    """25 knots per class (24x24) converted with ``--split split``."""
    from datasets import _build
    from shardkit.convert.examples import write_knots

    args = ["--kind", "image", "--data", "/train_data", "--label", "/train_label", "--image-shape", "24,24,3",
            "--num-shards", "2", "--split", split]
    return _build(tmp_path_factory, ("knots-split", split), lambda root: write_knots(f"{root}/k.h5", 25, size=24, seed=0), args)


@pytest.mark.parametrize("split", ["1", "0.8,0,0.2"])
def test_fit_without_a_validation_split_keeps_the_last_epoch_and_says_so(tmp_path_factory, tmp_path: Path, capsys, split: str) -> None:
    from shardkit.train import cli

    dataset = _knots_split(tmp_path_factory, split)
    out = tmp_path / "run"
    rc = cli.main(["fit", dataset, "--model", "knot-cnn", "--epochs", "2", "--batch-size", "16", "--out", str(out), "--verbose", "0", "--no-tensorboard"])
    err = capsys.readouterr().err
    assert rc == 0, err
    assert f"{dataset}: no validation split: early stopping is off and the run keeps the last epoch's weights" in err
    history = (out / "history.csv").read_text().splitlines()
    assert history[0] == "epoch,accuracy,loss" and [r.split(",")[0] for r in history[1:]] == ["1", "2"]
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["weights"] == {"epoch": 2, "chosen_by": "last epoch (no validation split)"}
    assert "best_epoch" not in metrics and not (out / "best.weights.h5").exists()
    assert (out / "training_curves.png").stat().st_size > 0 and (out / "model.keras").exists()
    if split == "1":
        assert "test" not in metrics and f"{dataset}: no test split" in err
    else:
        assert metrics["test"]["examples"] == 15 and (out / "confusion_test.png").exists()


@pytest.fixture(scope="module")
def small_knots(tmp_path_factory) -> str:
    """51 train, 6 validation, 6 test examples of 24x24 knots."""
    return knots_dataset(tmp_path_factory, n_per_class=21, size=24, num_shards=2)


def test_mirrored_trains_with_an_odd_prime_batch_and_splits_that_do_not_divide(small_knots: str, tmp_path: Path) -> None:
    """Batch 5 over 2 replicas: 3 + 2 per step; 51 = 10 x 5 + 1 training examples (the 1 is dropped: a replica
    would get none); 6 = 5 + 1 validation and test examples are evaluated in batches of 4 (4 + 2) instead."""
    out = tmp_path / "run"
    r = _train([small_knots, "--model", "knot-cnn", "--epochs", "1", "--batch-size", "5", "--strategy", "mirrored",
                "--logical-cpus", "2", "--out", str(out), "--verbose", "0", "--no-tensorboard"])
    assert r.returncode == 0, r.stderr[-3000:]
    assert "Traceback" not in r.stderr
    for line in [
        "1 examples per epoch are not seen: the strategy needs equal, non-empty per-replica batches",
        "global batch 5 splits unevenly over 2 replicas (3 and 2 examples)",
        "validation: 6 examples evaluated in batches of 4, not 5, so that the last batch has an example for each of the 2 replicas",
        "test: 6 examples evaluated in batches of 4, not 5",
    ]:
        assert line in r.stderr
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["replicas"] == 2 and metrics["plan"]["dropped_per_epoch"] == 1 and metrics["test"]["examples"] == 6
    assert all(v == v for v in metrics["validation"].values()) and metrics["test"]["loss"] == metrics["test"]["loss"]  # no NaN


def test_batches_and_splits_a_replica_cannot_share_are_refused_before_training(small_knots: str, tmp_path: Path, capsys) -> None:
    import dataclasses

    from shardkit.spec import DatasetError
    from shardkit.train import dataset as reader

    ds = reader.open_dataset(small_knots)
    with pytest.raises(ValueError, match="--batch-size 1 is smaller than the 2 replicas, so a replica would get no example"):
        reader.training_plan(ds, 1, replicas=2)
    tiny = dataclasses.replace(ds, counts={**ds.counts, "validation": (1,)})
    with pytest.raises(DatasetError, match="the validation split has 1 example"):
        reader.training_plan(tiny, 16, replicas=2)
    for count, batch, replicas, expected in [(6, 5, 2, 4), (30, 29, 2, 28), (15, 32, 2, 32), (9, 4, 4, 5), (3, 2, 2, 3), (7, 7, 1, 7)]:
        chosen = reader.eval_batch_size(count, batch, replicas)
        assert chosen == expected and (count % chosen == 0 or count % chosen >= replicas)


def test_evaluate_uses_the_runs_precision_and_reproduces_its_test_loss(small_knots: str, tmp_path: Path, capsys) -> None:
    import keras

    from shardkit.train import cli

    out = tmp_path / "run"
    try:
        rc = cli.main(["fit", small_knots, "--model", "knot-cnn", "--epochs", "1", "--batch-size", "16", "--out", str(out),
                       "--precision", "mixed_bfloat16", "--verbose", "0", "--no-tensorboard"])
        err = capsys.readouterr().err
        assert rc == 0, err
        assert "--precision mixed_bfloat16 on CPU: computed in bfloat16, but it pays only on GPUs/TPUs" in err
        keras.mixed_precision.set_global_policy("float32")  # a fresh evaluate process starts in float32
        assert cli.main(["evaluate", str(out), small_knots]) == 0
    finally:
        keras.mixed_precision.set_global_policy("float32")
    fitted = json.loads((out / "metrics.json").read_text())["test"]
    (evaluation,) = out.glob("evaluation_test_*.json")
    evaluated = json.loads(evaluation.read_text())
    assert evaluated["loss"] == fitted["loss"] and evaluated["accuracy"] == fitted["accuracy"]


@pytest.mark.parametrize(
    "args, message",
    [
        (["--batch-size", "0"], "argument --batch-size: must be a whole number of at least 1, got '0'"),
        (["--epochs", "0"], "argument --epochs: must be a whole number of at least 1, got '0'"),
        (["--epochs", "-3"], "argument --epochs: must be a whole number of at least 1, got '-3'"),
        (["--seed", "-1"], "argument --seed: must be a whole number of at least 0, got '-1'"),
        (["--seed", "4294967296"], "argument --seed: must be at most 4294967295, got '4294967296'"),
        (["--repeat", "0"], "argument --repeat: must be a whole number of at least 1, got '0'"),
        (["--repeat", "-2"], "argument --repeat: must be a whole number of at least 1, got '-2'"),
        (["--patience", "-1"], "argument --patience: must be a whole number of at least 0, got '-1'"),
        (["--backup-every", "-5"], "argument --backup-every: must be a whole number of at least 0, got '-5'"),
        (["--learning-rate", "0"], "argument --learning-rate: must be a number above 0, got '0'"),
        (["--logical-cpus", "-1"], "argument --logical-cpus: must be a whole number of at least 0, got '-1'"),
        (["--epochs", "two"], "argument --epochs: expected a whole number of at least 1, got 'two'"),
    ],
)
def test_trainer_arguments_it_cannot_use_are_refused_in_one_line(tmp_path: Path, args: list[str], message: str) -> None:
    base = {"--epochs": "1", "--batch-size": "8", "--seed": "0"}
    for flag, value in zip(args[::2], args[1::2]):
        base[flag] = value
    argv = [str(tmp_path / "no-dataset"), "--model", "knot-cnn", "--out", str(tmp_path / "run"), *[x for kv in base.items() for x in kv]]
    r = subprocess.run([sys.executable, "-m", "shardkit.train", "fit", *argv], env=_env(), capture_output=True, text=True, timeout=60)
    assert r.returncode == 2
    assert r.stderr.splitlines() == [f"shardkit-train fit: error: {message} (see shardkit-train fit --help)"]
    assert not (tmp_path / "run").exists()


def test_evaluate_batch_size_and_api_config_are_checked_too(tmp_path: Path) -> None:
    from shardkit.train import fit

    r = subprocess.run([sys.executable, "-m", "shardkit.train", "evaluate", str(tmp_path), str(tmp_path), "--batch-size", "0"],
                       env=_env(), capture_output=True, text=True, timeout=60)
    assert r.returncode == 2 and len(r.stderr.splitlines()) == 1 and "argument --batch-size" in r.stderr
    config = fit.FitConfig(dataset=str(tmp_path), model="knot-cnn", epochs=0, batch_size=8, out=str(tmp_path / "run"))
    with pytest.raises(ValueError, match="--epochs must be a whole number of at least 1, not 0"):
        fit.fit(config)
    with pytest.raises(ValueError, match="runs seeds beyond 4294967295"):
        fit.check_config(fit.FitConfig(str(tmp_path), "knot-cnn", 1, 8, str(tmp_path), seed=2**32 - 1, repeat=2))
    assert not (tmp_path / "run").exists()


def test_a_single_class_is_refused_before_training(tmp_path_factory, tmp_path: Path, capsys) -> None:
    """The converter now refuses labels of one class; a dataset converted before it did (no dataset_id, one
    class in the metadata), or whose train split holds one class, is refused by fit before anything is built."""
    import shutil

    from shardkit.train import cli

    source = features_dataset(tmp_path_factory, n=100, timesteps=6, dim=8)

    def edited(name: str, one_label: bool) -> str:
        path = tmp_path / name
        shutil.copytree(source, path)
        meta = json.loads((path / "metadata.json").read_text())
        meta.pop("dataset_id", None)
        for split in meta["splits"].values():
            split["class_counts"] = [split["count"]] + ([] if one_label else [0])
        if one_label:
            meta["targets"][0].update(names=["0"], num_classes=1)
        (path / "metadata.json").write_text(json.dumps(meta))
        return str(path)

    for dataset, message in [
        (edited("one-label", True), "the labels have a single class ('0'); a classifier needs at least two"),
        (edited("one-in-train", False), "every training example is of class '0'; a classifier needs at least two"),
    ]:
        out = tmp_path / f"run-{Path(dataset).name}"
        rc = cli.main(["fit", dataset, "--model", "sequence-lstm", "--epochs", "1", "--batch-size", "8", "--out", str(out)])
        err = capsys.readouterr().err
        assert rc == 2 and err.strip().splitlines()[-1] == f"shardkit-train: error: {dataset}: {message}"
        assert not (out / "history.csv").exists() and not (out / "metrics.json").exists()


def test_early_stopping_says_when_and_which_weights_it_kept(small_knots: str, tmp_path: Path, capsys) -> None:
    from shardkit.train import cli, report

    out = tmp_path / "run"
    rc = cli.main(["fit", small_knots, "--model", "knot-cnn", "--epochs", "8", "--batch-size", "8", "--patience", "1",
                   "--learning-rate", "0.01", "--out", str(out), "--verbose", "0", "--no-tensorboard"])
    err = capsys.readouterr().err
    assert rc == 0, err
    history = report.read_history(str(out / "history.csv"))
    assert history["epoch"] == list(range(1, len(history["epoch"]) + 1)) and len(history["epoch"]) < 8  # stopped early
    best = int(history["epoch"][history["val_loss"].index(min(history["val_loss"]))])
    stopped = int(history["epoch"][-1])
    assert (f"early stopping after epoch {stopped}: val_loss has not improved on {min(history['val_loss']):.5f} "
            f"(epoch {best}) for 1 epoch(s); keeping epoch {best}'s weights") in err
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["best_epoch"] == best and metrics["weights"] == {"epoch": best, "chosen_by": "lowest val_loss"}
    assert metrics["validation"]["loss"] == min(history["val_loss"])
