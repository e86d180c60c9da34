"""train/options.py: the command line's choices and defaults come from it, and it needs no TensorFlow."""

from __future__ import annotations

import subprocess
import sys

import tensorflow as tf

from shardkit.train import options


def test_the_command_line_parses_without_importing_tensorflow() -> None:
    code = (
        "import sys\n"
        "from shardkit.train.cli import parser\n"
        "args = parser().parse_args(['fit', 'd', '--model', 'm', '--epochs', '1', '--batch-size', '8', '--out', 'r'])\n"
        "assert 'tensorflow' not in sys.modules, 'tensorflow imported'\n"
        "print(args.cycle_length, args.strategy, args.sampling, args.precision, args.sequence_encoding)\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    o = options.ReadOptions()
    assert done.stdout.split() == [str(o.cycle_length), options.STRATEGIES[0], options.SAMPLING_MODES[0],
                                   options.PRECISIONS[0], o.sequence_encoding]


def test_autotune_is_tf_data_autotune() -> None:
    assert options.AUTOTUNE == tf.data.AUTOTUNE
