"""``shardkit-convert``: command line for the conversion; Beam's own options go after ``--``."""

from __future__ import annotations

import argparse
import dataclasses
import logging
import os
import re
import signal
import sys
import threading

from shardkit.spec import AMINO_ACIDS, ENCODINGS, KINDS, TARGET_KINDS
from shardkit.usage import Parser

from .encoders import ARRAY_DTYPES, UNKNOWN_POLICIES
from . import columns
from .errors import SIGNALS, ConvertError, InputError
from .pipeline import ConvertConfig, columns_of, convert, order_inputs
from .plan import parse_fractions, read_fractions
from .records import COMPRESSIONS
from .runner import WORKER_MODES, check_beam_args

EPILOG = """\
examples:
  shardkit-convert knots.h5 --out knots-ds --kind image --data /train_data --label /train_label --image-shape 128,128,3
  shardkit-convert proteins.parquet --out prot-ds --kind sequence --data Sequence --label ec_lvl_1 \\
      --group-column cluster_id --max-length 660
  shardkit-convert table.parquet --out table-ds --feature sequence=sequence:Sequence:max_length=660 \\
      --feature props=array:props --feature family=category:family --target ec_lvl_1=class \\
      --target ec_lvl_2=class --target stability=regression --stratify ec_lvl_1
  shardkit-convert images.csv --out img-ds --feature image=image:path:files --target label=class:label
  shardkit-convert IN.h5 --out gs://bucket/ds ... -- --runner=DataflowRunner --project=P --region=R \\
      --temp_location=gs://bucket/tmp
  shardkit-convert IN.h5 --out ds ... -- --runner=apache_beam.runners.dask.dask_runner.DaskRunner \\
      --dask_client_address=HOST:8786
"""


def _shape(text: str) -> tuple[int, ...]:
    try:
        shape = tuple(int(x) for x in text.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r}: expected H,W,C such as 128,128,3") from None
    if len(shape) not in (2, 3) or min(shape) < 1:
        raise argparse.ArgumentTypeError(f"{text!r}: expected H,W or H,W,C with positive sizes")
    return shape


def _split(text: str) -> str:
    """An argparse type: 1 to 3 non-negative fractions (whether they sum to 1 is checked with the inputs)."""
    try:
        read_fractions(text)
    except ValueError as e:
        raise argparse.ArgumentTypeError(str(e)) from None
    return text


def _positive(kind: type, zero: bool = False) -> object:
    """An argparse type: a number above 0 (or 0 and above with ``zero``)."""
    def parse(text: str) -> object:
        try:
            v = kind(text)
        except ValueError:
            expected = "an integer" if kind is int else "a number"
            raise argparse.ArgumentTypeError(f"{text!r}: expected {expected}") from None
        if v < 0 or (v == 0 and not zero):
            raise argparse.ArgumentTypeError(f"{text!r}: must be {'0 or more' if zero else 'positive'}")
        return v

    return parse


def parser() -> argparse.ArgumentParser:
    """The argument parser (options as in docs/convert.md)."""
    p = Parser(
        prog="shardkit-convert", formatter_class=argparse.RawDescriptionHelpFormatter, epilog=EPILOG,
        description="Convert HDF5 / Parquet / Feather / CSV rows into shuffled, stratified, sharded TFRecords "
                    "with precomputed encodings and a metadata.json (an Apache Beam job).",
    )
    p.add_argument("inputs", nargs="+", metavar="INPUT", help="input file, or SPLIT=PATH items with --split-inputs")
    p.add_argument("--out", required=True, help="output dataset directory (published atomically)")
    p.add_argument("--kind", choices=KINDS, help="what the data holds")
    p.add_argument("--data", help="data node (HDF5, e.g. /train_data) or column (e.g. Sequence)")
    p.add_argument("--label", help="label node or column: integers, strings or one-hot rows")
    g = p.add_argument_group("several features and targets (instead of --kind/--data)")
    g.add_argument("--feature", action="append", default=[], metavar="NAME=KIND:COLUMN[:OPT=V...]",
                   help=f"a feature (repeatable); KIND {'|'.join(KINDS)}; options e.g. "
                        "shape=64,64,3, encoding=png, max_length=660, dtype=int64, files (the column holds file paths)")
    g.add_argument("--target", action="append", default=[], metavar="NAME=KIND:COLUMN[:OPT=V...]",
                   help=f"a target (repeatable); KIND {'|'.join(TARGET_KINDS)}; COLUMN defaults to NAME")
    g.add_argument("--spec", metavar="FILE", help="YAML or JSON file listing features, targets and stratify")
    g.add_argument("--stratify", metavar="TARGET",
                   help="class target to stratify the split by (default: the first; none: a seeded random split)")
    p.add_argument("--id", help="integer id column/node stored as row_id (default: the source row index)")
    p.add_argument("--group-column", help="keep each value of this column/node in a single split")
    p.add_argument("--name", help="feature name (default: the kind)")
    p.add_argument("--class-names", type=lambda t: tuple(n.strip() for n in t.split(",")),
                   help="names of the classes in label order, e.g. unknot,plus_trefoil,minus_trefoil")
    g = p.add_argument_group("images")
    g.add_argument("--image-shape", type=_shape, help="H,W,C of each image (needed when rows are flat)")
    g.add_argument("--image-encoding", choices=ENCODINGS["image"], default=ConvertConfig.image_encoding)
    g.add_argument("--image-scale", type=float, help="non-uint8 pixels become uint8(round(x * S)) (e.g. 255)")
    g = p.add_argument_group("sequences")
    g.add_argument("--max-length", type=_positive(int), help="pad/truncate 'post' to N (default: longest)")
    g.add_argument("--vocabulary", type=int, choices=sorted(AMINO_ACIDS), default=ConvertConfig.vocabulary,
                   help=" ".join(f"{n}: {AMINO_ACIDS[n]}." for n in sorted(AMINO_ACIDS)))
    g.add_argument("--unknown", choices=UNKNOWN_POLICIES, default=ConvertConfig.unknown,
                   help="a letter outside the vocabulary: code 0, or refuse the row")
    g = p.add_argument_group("arrays")
    g.add_argument("--dtype", choices=ARRAY_DTYPES, default=ConvertConfig.dtype)
    g = p.add_argument_group("splits and shards")
    split = ",".join(f"{x:g}" for x in ConvertConfig.split)
    g.add_argument("--split", type=_split, default=split, help=f"train,validation,test fractions (default {split})")
    g.add_argument("--split-inputs", action="store_true", help="inputs are train=PATH validation=PATH test=PATH")
    g.add_argument("--seed", type=_positive(int, zero=True), default=ConvertConfig.seed,
                   help="shuffle/split seed, 0 or more (same seed -> identical bytes)")
    sz = g.add_mutually_exclusive_group()
    sz.add_argument("--num-shards", type=_positive(int), help="train shards (others proportionally, at least 1)")
    sz.add_argument("--shard-size-mb", type=_positive(float), default=ConvertConfig.shard_size_mb,
                    help=f"target shard size (default {ConvertConfig.shard_size_mb:g})")
    compression = next(name for name, value in COMPRESSIONS.items() if value == ConvertConfig.compression)
    g.add_argument("--compression", choices=COMPRESSIONS, default=compression)
    g = p.add_argument_group("running")
    g.add_argument("--workers", type=_positive(int), default=ConvertConfig.workers,
                   help="local workers (default: CPU cores)")
    g.add_argument("--worker-mode", choices=WORKER_MODES, default=ConvertConfig.worker_mode,
                   help="local workers as processes or threads (no start-up cost; GIL-bound)")
    g.add_argument("--overwrite", action="store_true", help="replace an existing dataset at --out")
    g.add_argument("--quiet", action="store_true", help="no progress or summary")
    g.add_argument("-v", "--verbose", action="store_true", help="show Beam's and its workers' logs (debugging)")
    return p


def config_from_args(args: argparse.Namespace) -> ConvertConfig:
    """Plain config from parsed arguments (each option is the config field of its name); raises InputError for
    inconsistent choices."""
    try:
        split = parse_fractions(args.split)
    except ValueError as e:
        raise InputError(str(e)) from None
    same = {f.name: getattr(args, f.name) for f in dataclasses.fields(ConvertConfig) if hasattr(args, f.name)}
    return ConvertConfig(**{**same, "inputs": tuple(args.inputs), "split": split,
                     "compression": COMPRESSIONS[args.compression], "progress": not args.quiet,
                     "kind": args.kind or "", "data": args.data or "", "label": args.label or "", **_columns(args)})


def _columns(args: argparse.Namespace) -> dict:
    """The --spec file's and the --feature/--target items' features, targets and stratify target."""
    features, targets, stratify = columns.load_spec(args.spec) if args.spec else ([], [], None)
    features += [columns.parse_item(t, "--feature") for t in args.feature]
    targets += [columns.parse_item(t, "--target") for t in args.target]
    if targets and not features and args.kind:
        raise InputError("--target goes with --feature (or --spec); with --kind/--data, the target is --label")
    return {"features": tuple(features), "targets": tuple(targets), "stratify": args.stratify or stratify}


def main(argv: list[str] | None = None) -> int:
    """Run the converter; 0 on success, 2 on bad arguments, 1 on bad input or failure (nothing published)."""
    argv = list(sys.argv[1:] if argv is None else argv)
    beam_args: list[str] = []
    if "--" in argv:
        at = argv.index("--")
        argv, beam_args = argv[:at], argv[at + 1 :]
    try:
        args = parser().parse_args(argv)
    except SystemExit as e:
        return int(e.code or 0)
    _set_logging(args.verbose)
    try:
        check_beam_args(beam_args)
    except InputError as e:
        print(f"shardkit-convert: error: {e}", file=sys.stderr)
        return 2
    try:  # a mistake in what to convert, or in how the inputs are given, is a usage error
        columns_of(ConvertConfig(inputs=(), out="", kind=args.kind or "", data=args.data or "", label=args.label or "",
                                 name=args.name, **_columns(args)))
        order_inputs(ConvertConfig(inputs=tuple(args.inputs), out="", split_inputs=args.split_inputs,
                                   group_column=args.group_column))
    except InputError as e:
        print(f"shardkit-convert: error: {e}", file=sys.stderr)
        return 2
    SIGNALS.clear()
    previous = _exit_on_signals()
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    try:
        convert(config_from_args(args), beam_args)
    except (InputError, ConvertError) as e:
        if signal.SIGTERM in SIGNALS:
            print("shardkit-convert: terminated; nothing was published", file=sys.stderr)
            return 128 + signal.SIGTERM
        msg = re.sub(r"\s*\[while running '[^']*'\]", "", str(e))
        print(f"shardkit-convert: error: {msg}", file=sys.stderr)
        print("shardkit-convert: nothing was published", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("shardkit-convert: interrupted; nothing was published", file=sys.stderr)
        return 130
    except SystemExit as e:
        print("shardkit-convert: terminated; nothing was published", file=sys.stderr)
        return int(e.code or 1)
    finally:
        if previous is not None:
            signal.signal(signal.SIGTERM, previous[0])
            signal.signal(signal.SIGINT, previous[1])
    return 0


def _set_logging(verbose: bool) -> None:
    """Quiet by default (shardkit's own lines only); ``--verbose`` shows Beam's INFO logs."""
    if verbose:
        logging.basicConfig(format="%(levelname)s %(name)s: %(message)s")
        logging.getLogger().setLevel(logging.INFO)
        logging.getLogger("apache_beam").setLevel(logging.INFO)
    else:
        logging.getLogger().setLevel(logging.ERROR)
        logging.getLogger("apache_beam").setLevel(logging.CRITICAL)


def _exit_on_signals() -> tuple[object, object] | None:
    """Turn SIGTERM into SystemExit and Ctrl-C into KeyboardInterrupt, each recorded in ``errors.SIGNALS`` so
    that nothing is published even where a library swallows the exception; returns the previous handlers (None
    off the main thread, where handlers cannot be set)."""
    if threading.current_thread() is not threading.main_thread():
        return None

    def stop(signum: int, frame: object) -> None:
        SIGNALS.append(signum)
        if signum == signal.SIGINT:
            raise KeyboardInterrupt
        raise SystemExit(128 + signum)

    return signal.signal(signal.SIGTERM, stop), signal.signal(signal.SIGINT, stop)
