"""Command-line value types for ``shardkit-train`` (its parser is ``shardkit.usage.Parser``).

Each type rejects what the trainer cannot use (a zero batch, no epochs, a negative seed) while the command line
is parsed, so a mistake costs no dataset read and no model build, and ends with exit status 2.
"""

from __future__ import annotations

import argparse
from typing import Any, Callable

from shardkit.train.options import ReadOptions
from shardkit.train.staging import DEFAULT_MAX_GB


def _whole(least: int, what: str) -> Callable[[str], int]:
    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected a whole number {what}, got {text!r}") from None
        if value < least:
            raise argparse.ArgumentTypeError(f"must be a whole number {what}, got {text!r}")
        return value

    parse.__name__ = f"whole number {what}"
    return parse


positive_int = _whole(1, "of at least 1")
non_negative_int = _whole(0, "of at least 0")
MAX_SEED = 2**32 - 1  # numpy's and TensorFlow's seeds are unsigned 32-bit


def seed(text: str) -> int:
    """A seed numpy, Python and TensorFlow all accept: 0 to 2**32 - 1."""
    value = non_negative_int(text)
    if value > MAX_SEED:
        raise argparse.ArgumentTypeError(f"must be at most {MAX_SEED}, got {text!r}")
    return value


def _positive_or_auto(text: str, unit: str) -> int | None:
    """A positive whole number of ``unit``, or None for ``auto``."""
    if text == "auto":
        return None
    if not text.isdigit() or int(text) < 1:
        raise argparse.ArgumentTypeError(f"expected a positive number of {unit} or 'auto', got {text!r}")
    return int(text)


def cycle_length(text: str) -> int | None:
    """``--cycle-length`` values: a positive number of shards, or ``auto`` for tf.data's AUTOTUNE (None)."""
    return _positive_or_auto(text, "shards")


def steps_per_execution(text: str) -> int | str:
    """``--steps-per-execution`` values: a positive number of steps, or ``auto``."""
    n = _positive_or_auto(text, "steps")
    return "auto" if n is None else n


def positive_float(text: str) -> float:
    """A finite number above 0 (learning rate, buffer sizes)."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number above 0, got {text!r}") from None
    if not 0 < value < float("inf"):
        raise argparse.ArgumentTypeError(f"must be a number above 0, got {text!r}")
    return value


def non_negative_float(text: str) -> float:
    """A finite number of at least 0 (a budget that 0 turns off)."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number of at least 0, got {text!r}") from None
    if not 0 <= value < float("inf"):
        raise argparse.ArgumentTypeError(f"must be a number of at least 0, got {text!r}")
    return value


def add_reading_options(p: argparse.ArgumentParser, default: float | None = ReadOptions.readahead_mb) -> None:
    """``--readahead-mb`` and the cache of s3:// datasets, on the commands that read shards to train or test
    (``default`` None: the run's own setting)."""
    p.add_argument("--readahead-mb", type=non_negative_float, default=default, metavar="MB",
                   help="shard bytes read (or downloaded) ahead of the reader, in its order; 0: off (default "
                        + (f"{default:g})" if default is not None else "the run's)"))
    p.add_argument("--cache-dir", help="where s3:// datasets are cached (default $SHARDKIT_CACHE_DIR or ~/.cache/shardkit)")
    p.add_argument("--cache-max-gb", type=positive_float, default=DEFAULT_MAX_GB,
                   help="cache limit; shards and datasets not being read are evicted, least recently used first")


def dataset_command(subparsers: "argparse._SubParsersAction[argparse.ArgumentParser]", name: str, help: str,
                    doc: str | None, run: Callable[[argparse.Namespace], Any]) -> argparse.ArgumentParser:
    """A ``shardkit-train NAME DATASET`` subcommand: ``help``, the first line of ``doc`` as its description, the
    DATASET argument, and ``run`` as what it does; the caller adds its options."""
    p = subparsers.add_parser(name, help=help, description=doc.splitlines()[0] if doc else None)
    p.add_argument("dataset", metavar="DATASET", help="dataset directory written by shardkit-convert")
    p.set_defaults(func=run)
    return p
