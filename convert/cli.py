"""``shardkit-convert``: command line for the conversion; Beam's own options go after ``--``."""

from __future__ import annotations

import argparse
import logging
import os
import re
import signal
import sys
import threading

from shardkit.usage import Parser

from .errors import ConvertError, InputError
from .pipeline import ConvertConfig, convert
from .plan import parse_fractions
from .runner import check_beam_args

EPILOG = """\
examples:
  shardkit-convert knots.h5 --out knots-ds --kind image --data /train_data --label /train_label --image-shape 128,128,3
  shardkit-convert proteins.parquet --out prot-ds --kind sequence --data Sequence --label ec_lvl_1 \\
      --group-column cluster_id --max-length 660
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
    p.add_argument("--kind", required=True, choices=["image", "sequence", "array"], help="what the data holds")
    p.add_argument("--data", required=True, help="data node (HDF5, e.g. /train_data) or column (e.g. Sequence)")
    p.add_argument("--label", required=True, help="label node or column: integers, strings or one-hot rows")
    p.add_argument("--id", help="integer id column/node stored as row_id (default: the source row index)")
    p.add_argument("--group-column", help="keep each value of this column/node in a single split")
    p.add_argument("--name", help="feature name (default: the kind)")
    p.add_argument("--class-names", type=lambda t: tuple(n.strip() for n in t.split(",")),
                   help="names of the classes in label order, e.g. unknot,plus_trefoil,minus_trefoil")
    g = p.add_argument_group("images")
    g.add_argument("--image-shape", type=_shape, help="H,W,C of each image (needed when rows are flat)")
    g.add_argument("--image-encoding", choices=["raw", "png"], default="raw")
    g.add_argument("--image-scale", type=float, help="non-uint8 pixels become uint8(round(x * S)) (e.g. 255)")
    g = p.add_argument_group("sequences")
    g.add_argument("--max-length", type=_positive(int), help="pad/truncate 'post' to N (default: longest)")
    g.add_argument("--vocabulary", type=int, choices=[20, 25], default=20, help="25 adds X B U O Z as codes")
    g.add_argument("--unknown", choices=["zero", "reject"], default="zero", help="unknown letters -> 0, or fail")
    g = p.add_argument_group("arrays")
    g.add_argument("--dtype", choices=["float32", "float16"], default="float32")
    g = p.add_argument_group("splits and shards")
    g.add_argument("--split", default="0.8,0.1,0.1", help="train,validation,test fractions (default 0.8,0.1,0.1)")
    g.add_argument("--split-inputs", action="store_true", help="inputs are train=PATH validation=PATH test=PATH")
    g.add_argument("--seed", type=_positive(int, zero=True), default=0,
                   help="shuffle/split seed, 0 or more (same seed -> identical bytes)")
    sz = g.add_mutually_exclusive_group()
    sz.add_argument("--num-shards", type=_positive(int), help="train shards (others proportionally, at least 1)")
    sz.add_argument("--shard-size-mb", type=_positive(float), default=128.0, help="target shard size (default 128)")
    g.add_argument("--compression", choices=["none", "gzip"], default="none")
    g = p.add_argument_group("running")
    g.add_argument("--workers", type=_positive(int), help="local workers (default: CPU cores)")
    g.add_argument("--worker-mode", choices=["process", "thread"], default="process",
                   help="local workers as processes (default) or threads (no start-up cost; GIL-bound)")
    g.add_argument("--overwrite", action="store_true", help="replace an existing dataset at --out")
    g.add_argument("--quiet", action="store_true", help="no progress or summary")
    g.add_argument("-v", "--verbose", action="store_true", help="show Beam's and its workers' logs (debugging)")
    return p


def config_from_args(args: argparse.Namespace) -> ConvertConfig:
    """Plain config from parsed arguments; raises InputError for inconsistent choices."""
    try:
        split = parse_fractions(args.split)
    except ValueError as e:
        raise InputError(str(e)) from None
    return ConvertConfig(
        inputs=tuple(args.inputs), out=args.out, kind=args.kind, data=args.data, label=args.label, id=args.id,
        group_column=args.group_column, name=args.name, split_inputs=args.split_inputs,
        image_shape=args.image_shape, image_encoding=args.image_encoding, image_scale=args.image_scale,
        max_length=args.max_length, vocabulary=args.vocabulary, unknown=args.unknown, dtype=args.dtype,
        split=split, seed=args.seed, num_shards=args.num_shards, shard_size_mb=args.shard_size_mb,
        compression="GZIP" if args.compression == "gzip" else None, workers=args.workers or 0,
        worker_mode=args.worker_mode, class_names=args.class_names,
        overwrite=args.overwrite, progress=not args.quiet, verbose=args.verbose,
    )


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
    previous = _exit_on_sigterm()
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    try:
        convert(config_from_args(args), beam_args)
    except (InputError, ConvertError) as e:
        if _TERMINATED:
            print("shardkit-convert: terminated; nothing was published", file=sys.stderr)
            return 128 + _TERMINATED[0]
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
            signal.signal(signal.SIGTERM, previous)
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


_TERMINATED: list[int] = []


def _exit_on_sigterm() -> object:
    """Turn SIGTERM into SystemExit so the temp dir is removed; returns the previous handler (None off the
    main thread, where handlers cannot be set)."""
    if threading.current_thread() is not threading.main_thread():
        return None

    def stop(signum: int, frame: object) -> None:
        _TERMINATED.append(signum)
        raise SystemExit(128 + signum)

    return signal.signal(signal.SIGTERM, stop)
