"""Real rows in the trainer: several features, any kind of target, and format version 1 still training.

Datasets: tests/v2data.py writes small version 2 datasets record by record; tests/fixtures/v1-* are
version 1 datasets written by the converter before the format changed.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import v2data
from shardkit import spec
from shardkit.train import dataset as reader
from shardkit.train.options import ReadOptions

TESTS = os.path.dirname(os.path.abspath(__file__))
FIXTURES = os.path.join(TESTS, "fixtures")


@pytest.fixture(scope="module")
def rows(tmp_path_factory: pytest.TempPathFactory) -> str:
    return v2data.learnable(str(tmp_path_factory.mktemp("rows") / "dataset"))


@pytest.fixture(scope="module")
def scalar(tmp_path_factory: pytest.TempPathFactory) -> str:
    return v2data.scalar_regression(str(tmp_path_factory.mktemp("scalar") / "dataset"))


def shapes(value: object) -> object:
    """(dtype, shape) of a tensor, or of each tensor of a dict."""
    if isinstance(value, dict):
        return {k: shapes(v) for k, v in value.items()}
    return (value.dtype.name, tuple(value.shape))


def test_several_features_and_targets_read_as_dicts_of_their_kinds(rows: str) -> None:
    x, y = next(iter(reader.eval_dataset(rows, "test", 5)))
    assert shapes(x) == {"scan": ("uint8", (5, 8, 8, 1)), "dose": ("float32", (5,)), "site": ("int32", (5,))}
    assert shapes(y) == {"kind": ("int32", (5,)), "tags": ("float32", (5, 3)), "score": ("float32", (5,))}
    ids = reader.read_row_ids(rows, "test")[:5]  # v2data.learnable: test rows are 420.. in row order
    site = x["site"].numpy()
    assert (y["kind"].numpy() == np.array([0, 1, 2, 2])[site]).all()
    assert (y["tags"].numpy()[:, 1] == (site < 2)).all()
    np.testing.assert_allclose(y["score"].numpy(), 2 * x["dose"].numpy() + 1, atol=0.5)
    x, _ = next(iter(reader.eval_dataset(rows, "test", 5, ReadOptions(with_row_id=True, rescale_images=True))))
    assert sorted(x) == ["dose", "row_id", "scan", "site"] and (x["row_id"].numpy() == ids).all()
    assert x["scan"].dtype.name == "float32" and float(x["scan"].numpy().max()) <= 1.0


def test_one_feature_and_one_target_still_yield_bare_tensors(scalar: str) -> None:
    x, y = next(iter(reader.eval_dataset(scalar, "test", 4)))
    assert shapes(x) == ("float32", (4,)) and shapes(y) == ("float32", (4,))  # an int64 scalar reads as float32
    np.testing.assert_allclose(y.numpy(), x.numpy() / 10, rtol=1e-6)
    x, _ = next(iter(reader.eval_dataset(scalar, "test", 4, ReadOptions(with_row_id=True))))
    assert sorted(x) == ["row_id", "x"]
    for name, kind in (("v1-knots", ("uint8", (3, 8, 8, 3))), ("v1-proteins", ("float32", (3, 40, 21)))):
        x, y = next(iter(reader.eval_dataset(os.path.join(FIXTURES, name), "train", 3)))
        assert shapes(x) == kind and shapes(y) == ("int32", (3,))


def test_balanced_sampling_evens_out_the_stratify_target(rows: str) -> None:
    kinds = np.concatenate([y["kind"].numpy() for _, y in reader.train_dataset(rows, 120, 2, sampling="balanced")])
    assert sorted(np.bincount(kinds, minlength=3) / len(kinds)) == pytest.approx([1 / 3] * 3, abs=0.07)
    # stored: 86 north, 102 south, 172 east or west (0.24, 0.28, 0.48)


def test_balanced_sampling_without_a_class_target_is_refused(scalar: str) -> None:
    with pytest.raises(spec.DatasetError, match="--sampling balanced needs a class target"):
        next(iter(reader.train_dataset(scalar, 4, 1, sampling="balanced")))


def _fit(args: list[str], **env: str) -> subprocess.CompletedProcess:
    from test_train_fit import _env

    return subprocess.run([sys.executable, "-m", "shardkit.train", "fit", *args], env=_env(**env),
                          capture_output=True, text=True, timeout=600)


def test_tabular_learns_every_target_of_a_multi_column_dataset(rows: str, tmp_path: Path, capsys) -> None:
    from shardkit.train import cli

    out = tmp_path / "run"
    done = _fit([rows, "--model", "tabular", "--epochs", "3", "--batch-size", "32", "--learning-rate", "0.01",
                 "--out", str(out), "--verbose", "0", "--no-tensorboard"])
    assert done.returncode == 0, done.stderr[-3000:]
    metrics = json.loads((out / "metrics.json").read_text())
    test = metrics["test"]
    # learnable(): kind follows the site (majority class 0.62 of test), score = 2 dose + 1, tags from dose/site/scan
    assert test["kind_accuracy"] >= 0.8 and test["targets"]["score"]["r2"] > 0.5 and test["tags_auc"] > 0.7
    assert {"kind_loss", "tags_loss", "score_loss", "score_mae", "tags_binary_accuracy", "loss"} <= set(test)
    assert np.asarray(test["confusion_matrix"]).sum() == 60 == test["examples"]
    assert test["targets"]["kind"]["confusion_matrix"] == test["confusion_matrix"]
    assert set(test["targets"]["tags"]["labels"]) == {"positive dose", "north or south", "bright"}
    assert test["targets"]["tags"]["labels"]["north or south"]["auc"] > 0.9
    assert metrics["validation"]["kind_accuracy"] >= 0.8 and metrics["weights"]["chosen_by"] == "lowest val_loss"
    for name in ("confusion_test_kind.png", "labels_test_tags.png", "regression_test_score.png", "training_curves.png"):
        assert (out / name).stat().st_size > 0, name
    predictions = np.load(out / "predictions_test.npz")
    assert sorted(predictions.files) == sorted(["row_id", "label", "predicted", "kind_true", "kind_predicted", "tags_true",
                                                "tags_predicted", "score_true", "score_predicted"])
    assert predictions["tags_predicted"].shape == (60, 3) and predictions["score_predicted"].shape == (60,)

    capsys.readouterr()
    assert cli.main(["evaluate", str(out), rows]) == 0  # rebuilt from config.json: the same test numbers
    again = json.loads(capsys.readouterr().out)
    assert again["kind_accuracy"] == test["kind_accuracy"]
    assert again["targets"]["score"]["r2"] == pytest.approx(test["targets"]["score"]["r2"], abs=1e-6)


def test_a_user_model_takes_features_by_name_and_resumes_mid_epoch(rows: str, tmp_path: Path) -> None:
    from test_train_recorder import read_log

    out = tmp_path / "run"
    args = [rows, "--model", "v2data:build", "--epochs", "2", "--batch-size", "32", "--out", str(out),
            "--backup-every", "3", "--verbose", "0", "--no-tensorboard"]
    first = _fit(args, SHARDKIT_ROW_LOG=str(tmp_path / "a.log"), SHARDKIT_KILL_AFTER="17")  # epoch 2, step 5 of 12
    assert first.returncode == -9, first.stderr[-3000:]
    k = json.loads((out / "backup" / "training_metadata.json").read_text())["step"]
    assert 0 < k < 12
    second = _fit(args, SHARDKIT_ROW_LOG=str(tmp_path / "b.log"))
    assert second.returncode == 0, second.stderr[-3000:]
    assert f"resuming from backup at epoch 2, step {k}/12" in second.stderr
    before, after = read_log(str(tmp_path / "a.log")), read_log(str(tmp_path / "b.log"))
    epoch_two = np.concatenate(before[12 : 12 + k] + after[: 12 - k])
    assert sorted(epoch_two.tolist()) == sorted(reader.read_row_ids(rows, "train").tolist())
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["resumed_from"]["step"] == k and metrics["epochs_run"] == 2
    assert {"kind_accuracy", "tags_auc", "score_mae"} <= set(metrics["test"])


@pytest.mark.parametrize("name", ["v1-knots", "v1-proteins"])
def test_version_1_datasets_fit_and_evaluate(name: str, tmp_path: Path, capsys) -> None:
    from shardkit.train import cli

    path, out = os.path.join(FIXTURES, name), tmp_path / "run"
    model = {"v1-knots": "tabular", "v1-proteins": "protein-cnn"}[name]  # knot-cnn needs 18 px; these are 8 px
    rc = cli.main(["fit", path, "--model", model, "--epochs", "1", "--batch-size", "8", "--out", str(out),
                   "--verbose", "0", "--no-tensorboard"])
    assert rc == 0, capsys.readouterr().err
    test = json.loads((out / "metrics.json").read_text())["test"]
    count = spec.read_metadata(path).splits["test"].count
    assert 0 <= test["accuracy"] <= 1 and np.asarray(test["confusion_matrix"]).sum() == count
    assert (out / "confusion_test.png").exists() and (out / "predictions_test.npz").exists()
    capsys.readouterr()
    assert cli.main(["evaluate", str(out), path]) == 0
    assert json.loads(capsys.readouterr().out)["accuracy"] == test["accuracy"]


def _error(capsys) -> str:
    lines = [line for line in capsys.readouterr().err.splitlines() if line.startswith("shardkit-train")]
    assert len(lines) == 1, lines
    return lines[0]


def test_class_only_options_refuse_a_dataset_without_a_class_target(scalar: str, tmp_path: Path, capsys) -> None:
    from shardkit.train import cli

    base = ["fit", scalar, "--model", "tabular", "--epochs", "1", "--batch-size", "8", "--verbose", "0", "--no-tensorboard"]
    for option, said in ((["--sampling", "balanced"], "--sampling balanced"), (["--repeat", "2"], "--repeat")):
        out = tmp_path / option[0].strip("-")
        assert cli.main([*base, "--out", str(out), *option]) == 2
        assert _error(capsys) == (f"shardkit-train: error: {scalar}: {said} needs a class target, and this dataset has "
                                  f"none (targets: y (regression)); run without {said}")
        assert not out.exists()
    assert cli.main([*base, "--out", str(tmp_path / "plain")]) == 0  # a regression target trains
    test = json.loads((tmp_path / "plain" / "metrics.json").read_text())["test"]
    assert {"loss", "mae", "targets"} <= set(test) and "r2" in test["targets"]["y"] and "confusion_matrix" not in test
    assert (tmp_path / "plain" / "regression_test.png").exists()


def test_tabular_normalization_comes_back_with_the_weights(rows: str, tmp_path: Path) -> None:
    from shardkit.train import models

    meta = spec.read_metadata(rows)
    trained = models.build_model("tabular", meta, ReadOptions(), rows)  # normalization adapted to the train split
    x, _ = next(iter(reader.eval_dataset(rows, "test", 8)))
    trained.save_weights(tmp_path / "w.weights.h5")
    rebuilt = models.tabular(meta)  # no sample: mean 0, variance 1
    assert not np.allclose(rebuilt(x)["score"], trained(x)["score"])
    rebuilt.load_weights(tmp_path / "w.weights.h5")
    models.restore_state(rebuilt)
    for name in ("kind", "tags", "score"):
        np.testing.assert_allclose(rebuilt(x)[name], trained(x)[name], rtol=1e-5, atol=1e-6)


def test_a_model_input_that_is_no_feature_is_refused(rows: str, tmp_path: Path, capsys) -> None:
    import keras

    from shardkit.train import models

    meta = spec.read_metadata(rows)
    dose = keras.Input((), name="dosage")
    x = keras.layers.Reshape((1,))(dose)
    model = keras.Model(dose, {t.name: models.target_head(x, t) for t in meta.targets})
    with pytest.raises(spec.DatasetError, match=r"takes inputs \['dosage'\] that are not features of this dataset; "
                                                "name each keras.Input after the feature it takes: scan, dose, site"):
        models.check_model(model, meta, ReadOptions(), rows)
    with pytest.raises(spec.DatasetError, match=re.escape(
            f"{rows}: model knot-cnn takes one image feature, but this dataset has 3: scan (image), dose (scalar), "
            "site (category) (try --model tabular, which takes any set of features)")):
        models.build_model("knot-cnn", meta, ReadOptions(), rows)
    single = keras.Model(dose, models.target_head(x, meta.targets[0]))
    with pytest.raises(ValueError, match=r"--model m:b: the dataset has targets \['kind', 'tags', 'score'\], and b\(metadata\) "
                                         r"returned a model whose outputs are named \['kind'\]"):
        models._outputs_by_target(single, meta, "m:b")


def test_verify_hashes_every_feature_for_leaks(tmp_path: Path) -> None:
    from shardkit.spec import Feature, Target
    from shardkit.train import verify

    n = 12
    image = np.arange(n * 4, dtype=np.uint8).reshape(n, 2, 2, 1)
    dose = np.arange(n, dtype=np.float32)
    image[10], dose[10] = image[0], dose[0] + 1  # same image as train row 0, another dose: no leak
    image[11], dose[11] = image[1], dose[1]  # train row 1 again, in test: a leak
    columns = {"image": image, "dose": dose, "y": np.arange(n) % 2}
    features = (Feature("image", "image", (2, 2, 1), "uint8", "raw"), Feature("dose", "scalar", (), "float32", "float"))
    splits = {"train": np.arange(8), "validation": np.arange(8, 10), "test": np.arange(10, 12)}
    path = v2data.write_dataset(str(tmp_path / "d"), features, (Target(2, ("a", "b"), name="y"),), columns, splits,
                                stratify="y", num_shards=1)
    problems = verify.verify_dataset(path)
    assert [(p.kind, p.path, p.record) for p in problems] == [("leak", "test/test-00000-of-00001.tfrecord", 1)]
    assert "same content as train/train-00000-of-00001.tfrecord record 1 (row_id 11 vs 1)" in problems[0].message


def test_inspect_lists_every_feature_and_target(rows: str, capsys) -> None:
    from shardkit.train import cli

    assert cli.main(["inspect", rows, "--examples", "2"]) == 0
    text = capsys.readouterr().out
    for line in ("  scan: image (8, 8, 1) uint8 raw", "  dose: scalar () float32 float", "  site: category () int64 index, 4 categories",
                 "  kind: class, 3 classes: north, south, east or west",
                 "  tags: multilabel, 3 labels: positive dose, north or south, bright", "  score: regression, shape ()",
                 "splits stratified by kind"):
        assert line in text.splitlines(), line
    first = next(line for line in text.splitlines() if line.startswith("  row 0 kind 0 ('north'): "))
    example = json.loads(first.split(": ", 1)[1])
    assert example["site"] == {"index": 0, "value": "north"} and isinstance(example["dose"], float)
    assert example["tags"] and set(example["tags"]) <= {"positive dose", "north or south", "bright"}


@pytest.mark.slow
def test_the_converters_multi_column_table_trains_with_tabular(tmp_path: Path, capsys) -> None:
    """docs/convert.md's layout (a), converted by the real converter: a sequence, a float vector and a category;
    two class targets and a regression target, all trained at once."""
    from conftest import run_convert
    from shardkit.convert.examples import write_protein_table
    from shardkit.train import cli

    table = write_protein_table(str(tmp_path / "table.parquet"), 600, seed=0, min_length=40, max_length=120)
    rc, err = run_convert([table, "--out", str(tmp_path / "ds"), "--feature", "sequence=sequence:Sequence:max_length=120",
                           "--feature", "props=array:props", "--feature", "family=category", "--target", "ec_lvl_1=class",
                           "--target", "ec_lvl_2=class", "--target", "stability=regression", "--stratify", "ec_lvl_1",
                           "--id", "id", "--group-column", "cluster_id"])
    assert rc == 0, err
    out = tmp_path / "run"
    assert cli.main(["fit", str(tmp_path / "ds"), "--model", "tabular", "--epochs", "3", "--batch-size", "32",
                     "--learning-rate", "0.01", "--sequence-encoding", "codes", "--out", str(out), "--verbose", "0",
                     "--no-tensorboard"]) == 0, capsys.readouterr().err
    test = json.loads((out / "metrics.json").read_text())["test"]
    assert test["ec_lvl_1_accuracy"] >= 0.3  # 7 classes: chance is 0.14
    assert test["targets"]["stability"]["r2"] >= 0.5
    assert {"ec_lvl_2_accuracy", "stability_mae"} <= set(test) and len(test["targets"]["ec_lvl_2"]["confusion_matrix"]) == 21
