"""The distribution maps convert/ and train/ onto shardkit.convert / shardkit.train, in a wheel as in editable mode."""

from __future__ import annotations

import configparser
import os
import subprocess
import sys
import zipfile

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> zipfile.ZipFile:
    out = tmp_path_factory.mktemp("wheel")
    subprocess.run([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "-w", str(out), ROOT],
                   check=True, capture_output=True, text=True)
    (path,) = list(out.glob("shardkit-*.whl"))
    return zipfile.ZipFile(path)


def test_wheel_holds_both_halves_and_the_format_under_one_namespace(wheel: zipfile.ZipFile) -> None:
    names = set(wheel.namelist())
    for module in ("shardkit/__init__.py", "shardkit/spec.py", "shardkit/convert/cli.py",
                   "shardkit/convert/pipeline.py", "shardkit/train/cli.py", "shardkit/train/dataset.py"):
        assert module in names, module
    assert not any(n.startswith(("convert/", "train/", "tests/", "bench/")) for n in names)


def test_wheel_declares_both_console_scripts(wheel: zipfile.ZipFile) -> None:
    (ep,) = [n for n in wheel.namelist() if n.endswith("entry_points.txt")]
    cfg = configparser.ConfigParser()
    cfg.read_string(wheel.read(ep).decode())
    assert cfg["console_scripts"]["shardkit-convert"] == "shardkit.convert.cli:main"
    assert cfg["console_scripts"]["shardkit-train"] == "shardkit.train.cli:main"


def test_a_users_own_train_py_does_not_shadow_shardkit(tmp_path) -> None:
    (tmp_path / "train.py").write_text("raise SystemExit('the user script was imported')\n")
    (tmp_path / "convert.py").write_text("raise SystemExit('the user script was imported')\n")
    code = "import shardkit.train.dataset, shardkit.convert.plan, shardkit.spec; print('ok')"
    proc = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "ok"


def test_format_and_trainer_import_neither_beam_nor_pytables() -> None:
    code = ("import sys, shardkit.spec, shardkit.train.dataset, shardkit.train.fit, shardkit.train.cli; "
            "bad = [m for m in ('apache_beam', 'tables') if m in sys.modules]; print(bad)")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "[]"
