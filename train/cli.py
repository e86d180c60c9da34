"""``shardkit-train``: fit and evaluate Keras models on shardkit datasets (plus inspect / verify)."""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import sys
import traceback

from shardkit.spec import DatasetError
from shardkit.train import staging

SAMPLING_HELP = "epoch: each example once per epoch; replacement: i.i.d. draws (Poisson bootstrap); balanced: equal class frequency"


def _fit(args: argparse.Namespace) -> int:
    from shardkit.train import fit, interrupts, strategy

    strategy.configure_devices(args.logical_cpus, args.backend)
    given = {f.name: getattr(args, f.name) for f in dataclasses.fields(fit.FitConfig) if hasattr(args, f.name)}
    config = fit.FitConfig(**given, deterministic=not args.nondeterministic, tensorboard=not args.no_tensorboard)
    with interrupts.held():
        result = fit.fit(config, overwrite=args.overwrite)
    print(json.dumps(result.get("test", {}), sort_keys=True, default=str))
    return 0


def _evaluate(args: argparse.Namespace) -> int:
    from shardkit.train import fit, strategy

    strategy.configure_devices(0, args.backend)
    result = fit.evaluate_run(args.run_dir, args.dataset, args.split, args.batch_size, args.other_dataset,
                              args.readahead_mb)
    targets = {name: {k: v for k, v in entry.items() if k != "confusion_matrix"} for name, entry in result.get("targets", {}).items()}
    shown = {k: v for k, v in result.items() if k not in ("confusion_matrix", "targets")}
    print(json.dumps({**shown, **({"targets": targets} if targets else {})}, sort_keys=True))
    return 0


def parser() -> argparse.ArgumentParser:
    from shardkit.spec import SPLITS
    from shardkit.train import arguments, compare, diagnose, inspect, verify
    from shardkit.train.backends import BACKENDS
    from shardkit.usage import Parser
    from shardkit.train.options import PRECISIONS, SAMPLING_MODES, SEQUENCE_ENCODINGS, STRATEGIES, FitConfig

    p = Parser(prog="shardkit-train", description=__doc__)
    sub = p.add_subparsers(dest="command", required=True)

    f = sub.add_parser("fit", help="train a model on a dataset's train split (validation each epoch, test at the end)")
    f.add_argument("dataset", metavar="DATASET")
    f.add_argument("--model", required=True, help="knot-cnn | protein-cnn | sequence-lstm | tabular (any features) | pkg.module:build (build(metadata) -> keras.Model, inputs named after the features)")
    f.add_argument("--epochs", type=arguments.positive_int, required=True)
    f.add_argument("--batch-size", type=arguments.positive_int, required=True, help="global batch (per-replica batch x replicas)")
    f.add_argument("--out", required=True, metavar="RUN_DIR", help="run directory; rerunning into it resumes from its backup")
    f.add_argument("--overwrite", action="store_true", help="replace the run in RUN_DIR (finished or interrupted) instead of refusing")
    f.add_argument("--seed", type=arguments.seed, default=FitConfig.seed)
    f.add_argument("--strategy", default=FitConfig.strategy, choices=STRATEGIES)
    f.add_argument("--sampling", default=FitConfig.sampling, choices=SAMPLING_MODES, help=SAMPLING_HELP)
    f.add_argument("--learning-rate", type=arguments.positive_float, default=FitConfig.learning_rate)
    f.add_argument("--patience", type=arguments.non_negative_int, default=FitConfig.patience, help="EarlyStopping patience on val_loss (0: off; off without a validation split)")
    f.add_argument("--backup-every", type=arguments.non_negative_int, default=FitConfig.backup_every, metavar="STEPS", help="mid-epoch backup frequency (default: 4 per epoch)")
    f.add_argument("--precision", default=FitConfig.precision, choices=PRECISIONS)
    f.add_argument("--xla", action="store_true", help="compile the train step with XLA (TensorFlow; JAX always does), torch.compile on torch")
    f.add_argument("--steps-per-execution", type=arguments.steps_per_execution, default=FitConfig.steps_per_execution,
                   metavar="N|auto", help="train steps per call to the device (auto: 1 on CPU, measured on accelerators)")
    f.add_argument("--sequence-encoding", default=FitConfig.sequence_encoding, choices=SEQUENCE_ENCODINGS)
    f.add_argument("--skip-corrupt", action="store_true", help="read around damaged shards and report the records lost")
    f.add_argument("--nondeterministic", action="store_true", help="let tf.data reorder for speed (no exact resume)")
    f.add_argument("--cycle-length", type=arguments.cycle_length, default=FitConfig.cycle_length,
                   help=f"shards read in parallel, or auto (default {FitConfig.cycle_length or 'auto'})")
    f.add_argument("--shuffle-buffer-mb", type=arguments.positive_float, default=FitConfig.shuffle_buffer_mb, help="training shuffle buffer (decoded MB)")
    f.add_argument("--cache-validation", action="store_true", help="cache decoded validation/test batches in memory")
    f.add_argument("--repeat", type=arguments.positive_int, default=FitConfig.repeat, metavar="N", help="train N seeds; report mean +- 95%% CI")
    f.add_argument("--logical-cpus", type=arguments.non_negative_int, default=0, metavar="N", help="split the CPU into N devices (mirrored on CPU)")
    f.add_argument("--verbose", type=int, default=1, choices=(0, 1, 2))
    f.add_argument("--no-tensorboard", action="store_true")
    arguments.add_reading_options(f)
    f.set_defaults(func=_fit)

    e = sub.add_parser("evaluate", help="evaluate a run's model on a dataset split")
    e.add_argument("run_dir", metavar="RUN_DIR")
    e.add_argument("dataset", metavar="DATASET")
    e.add_argument("--split", default="test", choices=SPLITS)
    e.add_argument("--batch-size", type=arguments.positive_int, default=None)
    e.add_argument("--other-dataset", action="store_true", help="evaluate on a dataset other than the one the run was trained on")
    for command in (f, e):
        command.add_argument("--backend", choices=BACKENDS, default=None,
                             help="Keras backend (default: $KERAS_BACKEND, else tensorflow); tf.data reads the input on every backend")
    arguments.add_reading_options(e, default=None)
    e.set_defaults(func=_evaluate)

    inspect.register(sub)
    verify.register(sub)
    diagnose.register(sub)
    compare.register(sub)
    for command in sub.choices.values():
        command.add_argument("-v", "--log", action="store_true",
                             help="show TensorFlow's own log lines and warnings, and tracebacks (for debugging)")
    return p


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    from shardkit.train import backends, quiet

    if hasattr(args, "backend"):  # before anything imports Keras (TensorFlow does)
        try:
            args.backend = backends.select(args.backend)
        except ValueError as e:
            print(f"shardkit-train: error: {e}", file=sys.stderr)
            return 2
    quiet.configure(args.log)
    try:
        if staging.is_staged_url(str(getattr(args, "dataset", ""))):
            where = (args.dataset, getattr(args, "cache_dir", None), getattr(args, "cache_max_gb", staging.DEFAULT_MAX_GB))
            streams = args.command in ("fit", "evaluate", "bench") and getattr(args, "readahead_mb", None) != 0
            args.dataset = (staging.stream(*where, getattr(args, "cycle_length", None) or 8) if streams
                            else staging.stage(*where))
        return int(args.func(args) or 0)
    except BrokenPipeError:  # the reader of our output went away (`inspect DS | head`): stop quietly, as cat does
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 141
    except (DatasetError, ValueError, OSError, ImportError) as e:  # ImportError: keras_compat's version check
        if args.log:
            traceback.print_exc()
        print(f"shardkit-train: error: {_first_line(e)}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        if args.log:
            traceback.print_exc()
        resume = " (rerun the same command to resume from the last backup, if one was written)"
        print(f"shardkit-train: interrupted{resume if args.command == 'fit' else ''}", file=sys.stderr)
        return 130


def _first_line(e: Exception) -> str:
    """The message of an error as one line (Keras and TensorFlow errors span several)."""
    lines = [line.strip() for line in str(e).strip().splitlines() if line.strip()]
    return lines[0] if lines else type(e).__name__


if __name__ == "__main__":
    sys.exit(main())
