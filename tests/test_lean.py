"""One place for each thing: the one shard CRC scan, the converter CLI's choices from their constants, and
Ctrl-C at the start of training."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from datasets import knots_dataset, record_offsets


@pytest.fixture(scope="module")
def knots(tmp_path_factory: pytest.TempPathFactory) -> str:
    return knots_dataset(tmp_path_factory, n_per_class=40, size=24, num_shards=2)


def test_intact_batches_yields_each_intact_record_once_then_raises(knots: str, tmp_path: Path) -> None:
    """The one scan verify and --skip-corrupt share: whole batches, then record by record up to the damage."""
    import tensorflow as tf

    from shardkit import spec
    from shardkit.train import opening, verify

    meta = spec.read_metadata(knots)
    src = Path(knots, meta.splits["train"].shards[0].path)
    data = src.read_bytes()
    framed = [data[o + 12 : o + 12 + n] for o, n in record_offsets(str(src))]
    assert [r for b in opening.intact_batches(str(src), batch_size=7) for r in b] == framed

    shutil.copytree(knots, tmp_path / "cut")
    cut = tmp_path / "cut" / meta.splits["train"].shards[0].path
    offset, length = record_offsets(str(src))[10]
    damaged = bytearray(data)
    damaged[offset + 12 + length // 2] ^= 0xFF  # record 10's data no longer matches its CRC
    cut.write_bytes(bytes(damaged))
    got = []
    with pytest.raises(tf.errors.OpError):
        for batch in opening.intact_batches(str(cut), batch_size=4):
            got += list(batch)
    assert got == framed[:10]
    assert opening.intact_count(str(cut)) == 10
    scan = verify.scan_shard(str(tmp_path / "cut"), meta.splits["train"].shards[0].path, meta)
    assert [(p.kind, p.record) for p in scan.problems] == [("corrupt", 10)] and scan.count == 10


def test_convert_cli_defaults_are_the_config_defaults_and_parsing_needs_no_beam() -> None:
    """Every shardkit-convert default comes from ConvertConfig, so a bare command line is the default config;
    parsing imports neither Beam nor TensorFlow (a fresh interpreter tells)."""
    from shardkit.convert.cli import config_from_args, parser
    from shardkit.convert.pipeline import ConvertConfig

    argv = ["in.h5", "--out", "o", "--kind", "array", "--data", "x", "--label", "y"]
    assert config_from_args(parser().parse_args(argv)) == ConvertConfig(("in.h5",), "o", "array", "x", "y")
    probe = ("import sys; from shardkit.convert.cli import parser; parser().parse_args(sys.argv[1:]); "
             "print(sorted({'apache_beam', 'tensorflow'} & set(sys.modules)))")
    done = subprocess.run([sys.executable, "-c", probe, *argv], capture_output=True, text=True, timeout=60)
    assert (done.returncode, done.stdout.strip()) == (0, "[]"), done.stderr


@pytest.mark.parametrize("option, constant", [("--kind", "KINDS"), ("--worker-mode", "WORKER_MODES"),
                                               ("--unknown", "UNKNOWN_POLICIES"), ("--compression", "COMPRESSIONS"),
                                               ("--dtype", "ARRAY_DTYPES")])
def test_convert_cli_choices_are_the_constants(option: str, constant: str, capsys) -> None:
    from shardkit.convert import cli

    rc = cli.main(["in.h5", "--out", "o", "--kind", "array", "--data", "x", "--label", "y", option, "nope"])
    err = capsys.readouterr().err.strip()
    choices = ", ".join(f"'{c}'" for c in getattr(cli, constant))
    assert rc == 2 and err == (f"shardkit-convert: error: argument {option}: invalid choice: 'nope' "
                               f"(choose from {choices}) (see shardkit-convert --help)"), err


INTERRUPTED = ("shardkit-train: interrupted (rerun the same command to resume from the last backup, if one was "
               "written)")


def test_ctrl_c_as_training_starts_is_one_line_and_exit_130(knots: str, tmp_path: Path) -> None:
    """Ctrl-C right after the plan line lands while the input pipeline and the train step are being traced: it is
    held there and acted on at the next step boundary. Pressed every 0.1 s for 2 s, it also lands in the run's
    unwinding, where it must change nothing."""
    train = Path(sys.executable).parent / "shardkit-train"
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "TF_CPP_MIN_LOG_LEVEL")}
    proc = subprocess.Popen([str(train), "fit", knots, "--model", "knot-cnn", "--epochs", "500", "--batch-size", "2",
                             "--out", "run", "--verbose", "0", "--no-tensorboard"],
                            cwd=tmp_path, env=env, stderr=subprocess.PIPE, text=True)
    first = proc.stderr.readline()  # the plan line: the pipeline is built and traced right after it
    assert " steps of global batch 2" in first, first
    for _ in range(20):
        if proc.poll() is None:
            proc.send_signal(signal.SIGINT)
        time.sleep(0.1)
    rest = proc.stderr.read()
    assert proc.wait(timeout=120) == 130 and rest.strip().splitlines() == [INTERRUPTED], rest
    assert not (tmp_path / "run").exists()  # stopped before its first step: nothing of the run is kept
