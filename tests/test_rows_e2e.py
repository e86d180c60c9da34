"""End to end through the installed CLIs: each multi-column example converts with ``shardkit-convert`` and
trains with ``shardkit-train fit`` to a stated quality, and README's multi-column command works as printed."""
from __future__ import annotations

import json
import os
import re
import shlex
import subprocess
import sys
from pathlib import Path

import numpy as np

from test_train_fit import _env

BIN = os.path.dirname(sys.executable)
README = Path(__file__).resolve().parents[1] / "README.md"


def _run(*argv: str, cwd: Path, timeout: int = 600) -> subprocess.CompletedProcess:
    """Run a console script of this environment (or ``python -m ...`` when argv[0] is ``python``)."""
    exe = sys.executable if argv[0] == "python" else os.path.join(BIN, argv[0])
    return subprocess.run([exe, *argv[1:]], cwd=cwd, env=_env(), capture_output=True, text=True, timeout=timeout)


def _convert(*argv: str, cwd: Path) -> None:
    done = _run("shardkit-convert", *argv, "--workers", "1", "--quiet", cwd=cwd)
    assert done.returncode == 0, done.stderr[-3000:]


def _fit(data: str, model: str, epochs: int, cwd: Path, *extra: str) -> dict:
    done = _run("shardkit-train", "fit", data, "--model", model, "--epochs", str(epochs), "--out", "run",
                "--verbose", "0", "--no-tensorboard", *extra, cwd=cwd)
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads((cwd / "run" / "metrics.json").read_text())["test"]


def _chance(confusion: list[list[int]]) -> float:
    """The better of guessing uniformly and always guessing the test split's most common class."""
    cm = np.asarray(confusion)
    return max(1 / len(cm), cm.sum(axis=1).max() / cm.sum())


def test_table_example_trains_every_target_above_chance(tmp_path: Path) -> None:
    """Example (a) with the tabular preset: ec_lvl_1 beats chance by 0.3, its
    21-class refinement ec_lvl_2 by 0.2, and stability has R^2 > 0.5."""
    made = _run("python", "-m", "shardkit.convert.examples", "table", "table.parquet", "--n", "600",
                "--min-length", "20", "--max-length", "60", cwd=tmp_path)
    assert made.returncode == 0, made.stderr
    _convert("table.parquet", "--out", "ds", "--feature", "sequence=sequence:Sequence:max_length=60",
             "--feature", "props=array:props", "--feature", "family=category", "--target", "ec_lvl_1=class",
             "--target", "ec_lvl_2=class", "--target", "stability=regression", "--stratify", "ec_lvl_1",
             "--id", "id", "--group-column", "cluster_id", "--num-shards", "4", cwd=tmp_path)
    test = _fit("ds", "tabular", 8, tmp_path, "--batch-size", "32", "--learning-rate", "0.01")
    for name, margin in (("ec_lvl_1", 0.3), ("ec_lvl_2", 0.2)):
        chance = _chance(test["targets"][name]["confusion_matrix"])
        assert test[f"{name}_accuracy"] > chance + margin, (name, test[f"{name}_accuracy"], chance)
    assert test["targets"]["stability"]["r2"] > 0.5


def test_png_paths_example_trains_above_chance(tmp_path: Path) -> None:
    """Example (b), a CSV of 24x24 knot PNGs in three classes, with knot-cnn: accuracy above chance."""
    made = _run("python", "-m", "shardkit.convert.examples", "pngs", "pngs/images.csv", "--n", "40", "--size", "24",
                cwd=tmp_path)
    assert made.returncode == 0, made.stderr
    _convert("pngs/images.csv", "--out", "ds", "--feature", "image=image:path:files", "--target", "label=class",
             cwd=tmp_path)
    test = _fit("ds", "knot-cnn", 4, tmp_path, "--batch-size", "16")
    chance = _chance(test["confusion_matrix"])
    assert test["accuracy"] > chance + 0.15, (test["accuracy"], chance)


def test_npy_paths_example_trains_above_chance_with_sequence_lstm(tmp_path: Path) -> None:
    """Example (c), a table of per-sample (T, D) .npy feature files with a binary label, trained with
    sequence-lstm: accuracy above chance."""
    made = _run("python", "-m", "shardkit.convert.examples", "npys", "npys/labels.csv", "--n", "240",
                "--timesteps", "10", "--dim", "64", cwd=tmp_path)
    assert made.returncode == 0, made.stderr
    _convert("npys/labels.csv", "--out", "ds", "--feature", "features=array:path:files", "--target", "label=class",
             "--dtype", "float16", cwd=tmp_path)
    test = _fit("ds", "sequence-lstm", 4, tmp_path, "--batch-size", "16")
    chance = _chance(test["confusion_matrix"])
    assert test["accuracy"] > chance + 0.25, (test["accuracy"], chance)


def _readme_multi_column_command() -> list[str]:
    """README's multi-column ``shardkit-convert`` command, continuation lines joined, as argv."""
    text = README.read_text(encoding="utf-8")
    match = re.search(r"^ *(shardkit-convert table\.parquet .*?)$(?<!\\)", text, re.M | re.S)
    assert match, "README has no multi-column shardkit-convert command"
    assert "mkdir -p data\n" in text[:match.start()], "README writes into data/ without creating it"
    command = re.sub(r"\\\n\s*", " ", match.group(1))
    return shlex.split(command)


def test_readme_multi_column_command_works_and_inspect_verify_see_every_column(tmp_path: Path) -> None:
    argv = _readme_multi_column_command()
    assert argv[0] == "shardkit-convert" and argv.count("--feature") == 3 and argv.count("--target") == 3
    made = _run("python", "-m", "shardkit.convert.examples", "table", "table.parquet", "--n", "120",
                "--min-length", "20", "--max-length", "60", cwd=tmp_path)
    assert made.returncode == 0, made.stderr
    (tmp_path / "data").mkdir()
    _convert(*argv[1:], cwd=tmp_path)
    out = argv[argv.index("--out") + 1]

    shown = _run("shardkit-train", "inspect", out, cwd=tmp_path)
    assert shown.returncode == 0, shown.stderr
    lines = shown.stdout.splitlines()
    for line in ("features (3):", "  sequence: sequence (400,) uint8 codes", "  props: array (8,) float32 raw",
                 "  family: category () int64 index, 4 categories", "targets (3):",
                 "  ec_lvl_1: class, 7 classes: 1, 2, 3, 4, 5, 6, 7", "  stability: regression, shape ()"):
        assert line in lines, (line, shown.stdout)
    assert any(s.startswith("  ec_lvl_2: class, 21 classes: 1.1, 1.2, 1.3, 2.1") for s in lines), shown.stdout

    checked = _run("shardkit-train", "verify", out, cwd=tmp_path)
    assert checked.returncode == 0, checked.stdout + checked.stderr
    assert checked.stdout.splitlines()[-1].startswith(f"OK: {out}: 120 records in "), checked.stdout


def test_a_missing_parent_of_out_names_the_way_out(tmp_path: Path) -> None:
    """README's commands write under data/: without it the refusal says how to go on, and nothing is made."""
    from conftest import run_convert

    csv = tmp_path / "t.csv"
    csv.write_text("x,label\n1.0,0\n2.0,1\n3.0,0\n4.0,1\n", encoding="utf-8")
    parent = tmp_path / "data"
    rc, err = run_convert([str(csv), "--out", str(parent / "ds"), "--feature", "x=scalar", "--target", "label=class"])
    assert (rc, err) == (1, f"shardkit-convert: error: {parent}/ds: parent directory {parent} does not exist; "
                            f"create it (mkdir -p {parent}) or choose another --out\n"
                            "shardkit-convert: nothing was published\n")
    assert sorted(os.listdir(tmp_path)) == ["t.csv"]
