"""A training run: exact epochs from the shards, checkpoints, mid-epoch resume, test evaluation and reports.

Outputs in the run directory: config.json, history.csv, best.weights.h5, model.weights.h5, model.keras,
metrics.json, training_curves.png, per target confusion_test.png / regression_test.png / labels_test.png,
predictions_test.npz, logs/ (TensorBoard) and backup/ while running.
What may be written into a run directory, and when, is ``rundir``'s; read-time checks are ``integrity``'s.
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
import sys
from typing import Any

import keras
import numpy as np
import tensorflow as tf

from shardkit import spec
from shardkit.spec import DatasetError
from shardkit.train import dataset as reader
from shardkit.train import backends, integrity, interrupts, keras_compat, models, opening, pacing, report, rundir, targets
from shardkit.train.arguments import MAX_SEED
from shardkit.train.callbacks import (
    HistoryLogger,
    ReaderPositionBackup,
    ResumableEarlyStopping,
    read_position,
    truncate_history,
)
from shardkit.train.options import FitConfig
from shardkit.train.strategy import (
    KerasDevices,
    Worker,
    even_batches,
    has_accelerator,
    make_strategy,
    set_precision,
    strategy_name,
    worker_of,
)


def log(message: str) -> None:
    print(f"shardkit-train: {message}", file=sys.stderr, flush=True)


def check_config(config: FitConfig) -> None:
    """Refuse, before any reading, numbers the trainer cannot run with (the command line's types do the same)."""
    for name, least in (("epochs", 1), ("batch_size", 1), ("repeat", 1), ("seed", 0), ("patience", 0), ("backup_every", 0)):
        value = getattr(config, name)
        if isinstance(value, bool) or not isinstance(value, int) or value < least:
            raise ValueError(f"--{name.replace('_', '-')} must be a whole number of at least {least}, not {value!r}")
    if config.seed + config.repeat - 1 > MAX_SEED:
        raise ValueError(f"--seed {config.seed} with --repeat {config.repeat} runs seeds beyond {MAX_SEED}, the largest seed numpy takes")
    if not config.learning_rate > 0:
        raise ValueError(f"--learning-rate must be above 0, not {config.learning_rate!r}")
    n = config.steps_per_execution
    if n != "auto" and (isinstance(n, bool) or not isinstance(n, int) or n < 1):
        raise ValueError(f"--steps-per-execution must be a whole number of at least 1 or auto, not {n!r}")


def run_settings(config: FitConfig, dataset_id: str) -> dict[str, Any]:
    """What a run records in config.json and must match to resume or to be kept by a rerun of ``--repeat``."""
    return {**dataclasses.asdict(config), "backend_version": backends.version(config.backend), "dataset_id": dataset_id,
            "absolute_paths": {"dataset": os.path.abspath(config.dataset), "out": os.path.abspath(config.out)}}


def fit(config: FitConfig, strategy: Any = None, overwrite: bool = False) -> dict[str, Any]:
    """Train ``config.repeat`` seeds; with several, ``shardkit.train.repeat`` also writes summary.json.

    ``overwrite`` replaces a finished run in ``config.out``; without it a finished run is refused."""
    check_config(config)
    config = dataclasses.replace(config, backend=backends.select(config.backend))
    strategy = strategy or make_strategy(config.strategy, config.backend)
    if config.repeat <= 1:
        return run_once(config, strategy, overwrite)
    from shardkit.train import repeat

    return repeat.fit_repeats(config, strategy, overwrite)


def run_once(config: FitConfig, strategy: Any, overwrite: bool = False) -> dict[str, Any]:
    """One seed: build, (resume and) train, evaluate on the test split, write the reports.

    Nothing is written before the run directory, the dataset and the model have passed their checks; a
    run that fails before any progress (a backup or a finished epoch) removes the directory it created."""
    worker = worker_of(strategy)
    out = config.out if worker.is_chief else os.path.join(config.out, f"worker-{worker.index}")
    rundir.check(out, None, overwrite)
    if not worker.is_chief:
        rundir.check(config.out, None, overwrite)  # refuse together with the chief, or it would wait for it forever
    config = dataclasses.replace(config, backend=config.backend or backends.current())
    keras.utils.set_random_seed(config.seed)
    set_precision(config.precision)
    accelerated = has_accelerator(config.backend)
    if config.precision != "float32" and not accelerated:
        log(f"--precision {config.precision} on CPU: computed in {config.precision[6:]}, but it pays only on GPUs/TPUs (slower here)")
    ds = reader.open_dataset(config.dataset, config.skip_corrupt)
    _check_classes(ds, config.dataset)
    if config.sampling == "balanced":
        targets.require_class(ds.metadata, "--sampling balanced", config.dataset, counted=True)
    before = integrity.snapshot(ds)
    settings = run_settings(config, ds.metadata.dataset_id)
    _check_devices(config, strategy)
    rundir.check(out, settings, overwrite)
    for path, n in ds.lost.items():
        log(f"--skip-corrupt: {path}: {n} records lost (damaged shard; reading its intact prefix)")
    with strategy.scope():
        model = models.build_model(config.model, ds.metadata, config.read_options(), config.dataset)
        options = config.read_options(with_row_id="row_id" in models.input_names(model))
        models.check_model(model, ds.metadata, options, config.dataset)
    steps = _steps_per_execution(config, ds, options, strategy, accelerated)
    keras_compat.exact_last_execution()
    with strategy.scope():
        models.compile_model(model, ds.metadata, config.learning_rate, _jit(config), steps_per_execution=steps)
    interrupts.check()  # a Ctrl-C held while the dataset was opened and the model built: stop before writing
    created = rundir.prepare(out, overwrite)
    try:
        return _train(config, strategy, worker, out, ds, before, settings, model, options)
    except tf.errors.OpError as e:
        rundir.discard(out, created)
        error = integrity.read_error(ds, before, e)
        if error is None:
            raise
        raise error from e
    except BaseException:
        rundir.discard(out, created)
        raise


def _jit(config: FitConfig) -> bool:
    """Compile the step: with XLA on TensorFlow when ``--xla``; always on JAX (it runs eagerly otherwise);
    with torch.compile on torch when ``--xla``."""
    return True if config.backend == "jax" else config.xla


def _check_devices(config: FitConfig, strategy: Any) -> None:
    """JAX's data-parallel layout splits every batch evenly over the devices: the global batch must allow it."""
    replicas = strategy.num_replicas_in_sync
    if isinstance(strategy, KerasDevices) and strategy.distribution is not None and config.batch_size % replicas:
        raise ValueError(f"--batch-size {config.batch_size} does not split evenly over the {replicas} JAX devices; "
                         f"use a multiple of {replicas}, or --strategy one")


def _steps_per_execution(config: FitConfig, ds: reader.Dataset, options: reader.ReadOptions, strategy: Any,
                         accelerated: bool) -> int:
    """``--steps-per-execution`` as a number; ``auto`` measures a fresh copy of the model on one batch."""
    def step_seconds() -> float:
        x, y = next(iter(reader.eval_dataset(ds, "train", config.batch_size, options)))
        batch = (x, y) if config.backend == "tensorflow" else tuple(keras.tree.map_structure(np.asarray, (x, y)))

        def build() -> keras.Model:
            with strategy.scope():
                probe = models.build_model(config.model, ds.metadata, config.read_options(), config.dataset)
                models.compile_model(probe, ds.metadata, config.learning_rate, _jit(config), quiet=True)
            return probe

        return pacing.measure_step(build, batch)

    most = max(1, -(-ds.count("train") // config.batch_size))
    steps = pacing.resolve(config.steps_per_execution, config.backend, accelerated, step_seconds, most)
    if config.steps_per_execution == "auto":
        log(f"--steps-per-execution auto: {steps} step(s) per call" + ("" if accelerated else " (on CPU)"))
    return steps


def _train(config: FitConfig, strategy, worker: Worker, out: str, ds: reader.Dataset, before: dict,
           settings: dict[str, Any], model: keras.Model, options: reader.ReadOptions) -> dict[str, Any]:
    """Write config.json, train (resuming from a backup), then test and report."""
    spec.write_json(os.path.join(out, "config.json"), settings)

    backup_dir = os.path.join(out, "backup")
    probe = reader.training_input(ds, config.batch_size, config.epochs, config.seed, options, config.sampling, strategy=strategy)
    plan = _even_plan(probe.plan, strategy)
    fingerprint = {
        "dataset_id": ds.metadata.dataset_id,
        "batch_size": config.batch_size,
        "seed": config.seed,
        "sampling": config.sampling,
    }
    position = read_position(backup_dir)
    start_epoch, start_step = _resume_point(position, fingerprint, plan, backup_dir)
    if position is None:
        for stale in ("history.csv", "best.weights.h5"):
            if os.path.exists(os.path.join(out, stale)):
                os.remove(os.path.join(out, stale))
    else:
        truncate_history(os.path.join(out, "history.csv"), start_epoch)
    _describe(ds, plan, strategy, worker, start_epoch, start_step)
    if not _has_validation(ds):
        log(f"{config.dataset}: no validation split: early stopping is off and the run keeps the last epoch's weights")

    if isinstance(strategy, tf.distribute.Strategy) and (worker.count > 1 or strategy.num_replicas_in_sync > 1):
        _prebuild(model, ds, options, strategy)  # Keras' own build all-reduces a batch, failing on uneven replica batches
    save_freq = config.backup_every or max(1, plan.steps_per_epoch // 4)
    common = [integrity.DatasetWatch(ds, before), *_callbacks(config, out, ds, plan), interrupts.AtStepStart()]
    try:
        if start_step > 0:
            first = reader.training_input(
                ds, config.batch_size, start_epoch + 1, config.seed, options, config.sampling,
                start_epoch, start_step, strategy,
            )
            backup = ReaderPositionBackup(
                backup_dir, plan.steps_per_epoch, save_freq, start_epoch, start_step, fingerprint, delete_checkpoint=False
            )
            kwargs = {**_fit_kwargs(first, strategy, options), "epochs": config.epochs,
                      "steps_per_epoch": plan.steps_per_epoch - start_step}
            only_this_epoch = keras.callbacks.LambdaCallback(on_epoch_end=lambda *_: setattr(model, "stop_training", True))
            model.fit(callbacks=[*common, backup, only_this_epoch], verbose=config.verbose, **kwargs)
            start_epoch, start_step = start_epoch + 1, 0
        if start_epoch < config.epochs and not _stopped_early(common):
            rest = reader.training_input(
                ds, config.batch_size, config.epochs, config.seed, options, config.sampling,
                start_epoch, 0, strategy,
            )
            backup = ReaderPositionBackup(backup_dir, plan.steps_per_epoch, save_freq, start_epoch, 0, fingerprint)
            model.fit(callbacks=[*common, backup], verbose=config.verbose, **_fit_kwargs(rest, strategy, options))
        _report_early_stop(common)
    except tf.errors.DataLossError as e:
        problems = opening.find_corrupt_shards(ds)
        detail = "; ".join(problems) or str(e).splitlines()[0]
        raise DatasetError(f"training stopped on a damaged shard: {detail} (use --skip-corrupt to read around it)") from e
    return _save_test_and_report(config, model, ds, plan, options, strategy, worker, out, position, before)


def _data_parallel(strategy: Any) -> int:
    """The device count of a JAX data-parallel run (whose batches must split evenly), else 0."""
    return strategy.num_replicas_in_sync if isinstance(strategy, KerasDevices) and strategy.distribution else 0


def _even_plan(plan: reader.TrainingPlan, strategy: Any) -> reader.TrainingPlan:
    """The plan with the last batch cut to a multiple of the JAX devices (see ``even_batches``)."""
    cut = plan.last_batch % _data_parallel(strategy) if _data_parallel(strategy) else 0
    return dataclasses.replace(plan, last_batch=plan.last_batch - cut, examples_per_epoch=plan.examples_per_epoch - cut,
                               dropped_per_epoch=plan.dropped_per_epoch + cut)


def _fit_kwargs(inp: reader.TrainingInput, strategy: Any, options: reader.ReadOptions) -> dict[str, Any]:
    """``model.fit``'s inputs; under JAX data parallelism with batches cut to split evenly over the devices (the
    validation split read in the run's global batch, a multiple of the devices)."""
    kwargs = inp.fit_kwargs()
    devices = _data_parallel(strategy)
    if devices:
        kwargs["x"] = even_batches(kwargs["x"], devices)
        if "validation_data" in kwargs:
            validation = reader.eval_dataset(inp.dataset, "validation", inp.plan.batch_size, options)
            kwargs["validation_data"] = even_batches(validation, devices, inp.dataset.count("validation"), inp.plan.batch_size)
    return kwargs


def _prebuild(model: keras.Model, ds: reader.Dataset, options: reader.ReadOptions, strategy) -> None:
    """Build the model from one local batch before ``fit`` (see ``keras_compat.build_from_batch``)."""
    split = "validation" if "validation" in ds.counts and ds.count("validation") else "train"
    sample = next(iter(reader.eval_dataset(ds, split, 2, options)))
    with strategy.scope():
        keras_compat.build_from_batch(model, sample)


def _stopped_early(callbacks: list[keras.callbacks.Callback]) -> bool:
    return any(isinstance(c, keras.callbacks.EarlyStopping) and c.stopped_epoch > 0 for c in callbacks)


def _report_early_stop(callbacks: list[keras.callbacks.Callback]) -> None:
    for c in callbacks:
        if isinstance(c, keras.callbacks.EarlyStopping) and c.stopped_epoch > 0:
            log(
                f"early stopping after epoch {c.stopped_epoch + 1}: {c.monitor} has not improved on "
                f"{c.best:.5f} (epoch {c.best_epoch + 1}) for {c.patience} epoch(s); keeping epoch {c.best_epoch + 1}'s weights"
            )


def _has_validation(ds: reader.Dataset) -> bool:
    return "validation" in ds.counts and ds.count("validation") > 0


def _check_classes(ds: reader.Dataset, where: str) -> None:
    """A classifier needs two classes in each class target's labels, and (where the splits count them)
    among the training examples."""
    for label in targets.class_targets(ds.metadata):
        of = "" if label.name == spec.LABEL_KEY else f" of target {label.name!r}"
        if label.num_classes < 2:
            only = f" ({label.names[0]!r})" if label.names else ""
            raise DatasetError(f"{where}: the labels{of} have a single class{only}; a classifier needs at least two")
        if label.name != ds.metadata.stratify:
            continue
        train = ds.metadata.splits.get("train")
        counts = getattr(train, "class_counts", None) or []
        present = [label.names[i] for i, n in enumerate(counts) if n > 0]
        if len(present) == 1:
            raise DatasetError(f"{where}: every training example{of} is of class {present[0]!r}; a classifier needs at least two")


def _resume_point(position: dict | None, fingerprint: dict, plan: reader.TrainingPlan, backup_dir: str) -> tuple[int, int]:
    if position is None:
        return 0, 0
    for key, value in fingerprint.items():
        if key in position and position[key] != value:
            raise ValueError(
                f"{backup_dir}: backup was made with {key}={position[key]!r}, this run has {value!r}; "
                "resume with the same settings or delete the backup directory"
            )
    if position.get("steps_per_epoch", plan.steps_per_epoch) != plan.steps_per_epoch:
        raise ValueError(f"{backup_dir}: backup has {position['steps_per_epoch']} steps per epoch, this run {plan.steps_per_epoch}")
    return int(position["epoch"]), int(position["step"])


def _describe(ds, plan, strategy, worker: Worker, start_epoch: int, start_step: int) -> None:
    log(
        f"{ds.path}: train {ds.count('train')} examples -> {plan.steps_per_epoch} steps of global batch "
        f"{plan.batch_size} (last batch {plan.last_batch}); {strategy.num_replicas_in_sync} replica(s), "
        f"{plan.workers} worker(s)" + (f", input sharding {plan.policy}" if plan.workers > 1 else "")
        + (f"; Keras backend {keras.backend.backend()}" if keras.backend.backend() != "tensorflow" else "")
    )
    if plan.dropped_per_epoch:
        log(f"{plan.dropped_per_epoch} examples per epoch are not seen: the strategy needs equal, non-empty per-replica batches")
    replicas = strategy.num_replicas_in_sync
    count = ds.count("validation") if "validation" in ds.counts else 0
    if _data_parallel(strategy):
        if count % replicas:
            log(f"validation: {count % replicas} of {count} examples are left out each epoch: JAX data parallelism "
                f"needs batches that split evenly over the {replicas} devices (the test split is evaluated whole)")
    elif plan.workers == 1 and replicas > 1:
        if plan.batch_size % replicas:
            size = -(-plan.batch_size // replicas)
            log(f"global batch {plan.batch_size} splits unevenly over {replicas} replicas ({size} and {size - 1} examples)")
        for split in ("validation", "test"):
            count = ds.count(split) if split in ds.counts else 0
            batch = reader.eval_batch_size(count, plan.batch_size, replicas)
            if count and batch != plan.batch_size:
                log(f"{split}: {count} examples evaluated in batches of {batch}, not {plan.batch_size}, "
                    f"so that the last batch has an example for each of the {replicas} replicas")
    if start_epoch or start_step:
        log(f"resuming from backup at epoch {start_epoch + 1}, step {start_step}/{plan.steps_per_epoch}")


def _callbacks(config: FitConfig, out: str, ds: reader.Dataset, plan: reader.TrainingPlan) -> list[keras.callbacks.Callback]:
    """history.csv, TensorBoard, and with a validation split the best-val_loss checkpoint and early stopping."""
    monitor = "val_loss"
    history_path, best_path = os.path.join(out, "history.csv"), os.path.join(out, "best.weights.h5")
    cbs: list[keras.callbacks.Callback] = [HistoryLogger(history_path)]
    if _has_validation(ds):
        values = report.read_history(history_path).get(monitor, []) if os.path.exists(history_path) else []
        cbs.insert(0, keras.callbacks.ModelCheckpoint(
            best_path, monitor=monitor, save_best_only=True, save_weights_only=True,
            initial_value_threshold=min(values) if values else None,
        ))
        if config.patience > 0:
            def history() -> list[float]:
                return report.read_history(history_path).get(monitor, []) if os.path.exists(history_path) else []

            cbs.append(ResumableEarlyStopping(history, best_path, monitor=monitor, patience=config.patience,
                                              restore_best_weights=True))
    if config.tensorboard:
        cbs.append(keras.callbacks.TensorBoard(os.path.join(out, "logs"), update_freq="epoch", profile_batch=0))
    return cbs


def _save_test_and_report(config, model, ds, plan, options, strategy, worker: Worker, out: str, position, before=None) -> dict[str, Any]:
    """Keep the best weights, save the model, evaluate the test split and write plots and metrics.json."""
    best = os.path.join(out, "best.weights.h5")
    if os.path.exists(best):
        model.load_weights(best)
        models.restore_state(model)
    model.save_weights(os.path.join(out, "model.weights.h5"))
    model.save(os.path.join(out, "model.keras"))
    history_path = os.path.join(out, "history.csv")
    history = report.read_history(history_path) if os.path.exists(history_path) else {}
    result: dict[str, Any] = {
        "seed": config.seed,
        "model": config.model,
        "dataset": os.path.abspath(config.dataset),
        "dataset_id": ds.metadata.dataset_id,
        "strategy": strategy_name(strategy),
        "backend": config.backend,
        "backend_version": backends.version(config.backend),
        "steps_per_execution": int(model.steps_per_execution),
        "replicas": strategy.num_replicas_in_sync,
        "workers": worker.count,
        "plan": dataclasses.asdict(plan),
        "epochs_run": len(history.get("epoch", [])),
        "resumed_from": {k: v for k, v in position.items() if k != "state"} if position else None,
        "lost_records": ds.lost,
    }
    if history.get("val_loss"):
        i = int(np.nanargmin(history["val_loss"]))
        result["best_epoch"] = int(history["epoch"][i])
        result["validation"] = {k[4:]: v[i] for k, v in history.items() if k.startswith("val_")}
        result["weights"] = {"epoch": result["best_epoch"], "chosen_by": "lowest val_loss"}
    elif history.get("epoch"):
        result["weights"] = {"epoch": int(history["epoch"][-1]), "chosen_by": "last epoch (no validation split)"}
    if "test" in ds.counts and ds.count("test") > 0:
        test = evaluate_split(model, ds, "test", config.batch_size, options, strategy, out if worker.is_chief else None)
        result["test"] = test
        log("test: " + ", ".join(f"{k} {v:.4f}" for k, v in test.items() if isinstance(v, float)))
    else:
        log(f"{config.dataset}: no test split: nothing to evaluate at the end")
    if history:
        report.plot_history(history, os.path.join(out, "training_curves.png"))
    if before is not None:
        integrity.check_unchanged(ds, before, "before writing metrics.json")
    spec.write_json(os.path.join(out, "metrics.json"), result)
    return result


def evaluate_split(
    model: keras.Model,
    ds: reader.Dataset,
    split: str,
    batch_size: int,
    options: reader.ReadOptions,
    strategy: Any = None,
    out: str | None = None,
    name: str | None = None,
) -> dict[str, Any]:
    """Keras' loss and metrics over the whole split; with ``out`` (one worker) also each target's report and
    plot (``_report_targets``; ``name`` defaults to the split). Under JAX data parallelism the split is evaluated
    without the data-parallel layout, so that a last batch the devices do not divide is evaluated too."""
    strategy = strategy or tf.distribute.get_strategy()
    if worker_of(strategy).count > 1:
        data = strategy.distribute_datasets_from_function(
            lambda ctx: reader.eval_dataset(ds, split, ctx.get_per_replica_batch_size(batch_size), options)
        )
        return {k: float(v) for k, v in
                model.evaluate(data, verbose=0, return_dict=True, callbacks=[interrupts.AtStepStart()]).items()}
    keras_devices = isinstance(strategy, KerasDevices)
    replicas = 1 if keras_devices else strategy.num_replicas_in_sync
    with strategy.undistributed() if keras_devices else contextlib.nullcontext():
        return _evaluate_split(model, ds, split, batch_size, replicas, options, out, name)


def _evaluate_split(model: keras.Model, ds: reader.Dataset, split: str, batch_size: int, replicas: int,
                    options: reader.ReadOptions, out: str | None, name: str | None) -> dict[str, Any]:
    data = reader.eval_dataset(ds, split, reader.eval_batch_size(ds.count(split), batch_size, replicas), options)
    metrics = {k: float(v) for k, v in
               model.evaluate(data, verbose=0, return_dict=True, callbacks=[interrupts.AtStepStart()]).items()}
    if out is not None:
        metrics.update(_report_targets(model, ds, split, batch_size, options, out, name or split))
    return metrics


def _report_targets(model: keras.Model, ds: reader.Dataset, split: str, batch_size: int,
                    options: reader.ReadOptions, out: str, name: str) -> dict[str, Any]:
    """Per target, from one prediction pass: a class target's confusion matrix (``confusion_<name>.png``), a
    regression target's R², MAE and predicted-vs-true plot (``regression_<name>.png``), a multi-label target's
    per-label AUC and accuracy (``labels_<name>.png``); with several targets each file name ends in
    ``_<target>``. The primary class target's matrix is also ``confusion_matrix``, and every example's
    predictions go to ``predictions_<name>.npz``."""
    meta = ds.metadata
    row_ids, truth, scores = predict_split(model, ds, split, batch_size, options)
    primary = targets.primary_class(meta)
    result: dict[str, Any] = {"examples": int(len(row_ids)), "targets": {}}
    arrays: dict[str, np.ndarray] = {}
    for target, output in models.target_outputs(model, meta):
        tag = name if len(meta.targets) == 1 else f"{name}_{target.name}"
        title = split if len(meta.targets) == 1 else f"{split}, {target.name}"
        y, score = truth[target.name], scores[target.name]
        if target.kind == "class":
            predicted = models.predicted_classes(score, model, output)
            matrix = report.confusion_matrix(y, predicted, target.num_classes)
            report.plot_confusion(matrix, target.titles, os.path.join(out, f"confusion_{tag}.png"), title)
            entry: dict[str, Any] = {"confusion_matrix": matrix.tolist()}
            if target == primary:
                result["confusion_matrix"] = matrix.tolist()
                arrays.update(label=y, predicted=predicted)
        elif target.kind == "regression":
            predicted = score.reshape(y.shape)
            entry = report.regression_scores(y, predicted)
            report.plot_regression(y, predicted, os.path.join(out, f"regression_{tag}.png"), title)
        else:
            predicted = score if not models.outputs_logits(model, output) else 1 / (1 + np.exp(-score))
            entry = report.label_scores(y, predicted, target.titles)
            report.plot_label_scores(entry, os.path.join(out, f"labels_{tag}.png"), title)
        result["targets"][target.name] = entry
        arrays[f"{target.name}_true"], arrays[f"{target.name}_predicted"] = y, predicted
    report.write_predictions(os.path.join(out, f"predictions_{name}.npz"), row_ids, **arrays)
    return result


def predict_split(
    model: keras.Model, ds: reader.Dataset, split: str, batch_size: int, options: reader.ReadOptions
) -> tuple[np.ndarray, dict[str, np.ndarray], dict[str, np.ndarray]]:
    """(row_id, target name -> true values, target name -> model output) of every example of a split, in one pass.

    On TensorFlow calls the model through a tf.function of its own (keyed by the model, not by Keras' shared
    predict-step code), so repeated seeds don't add up to TensorFlow's frequent-retracing warning; on JAX and
    torch through ``predict_on_batch`` on numpy batches."""
    meta = ds.metadata
    data = reader.eval_dataset(ds, split, batch_size, dataclasses.replace(options, with_row_id=True))
    if keras.backend.backend() == "tensorflow":
        step = tf.function(model, reduce_retracing=True)

        def call(x: Any) -> Any:
            return step(x, training=False)
    else:
        data, call = data.as_numpy_iterator(), model.predict_on_batch
    ids: list[np.ndarray] = []
    truth: dict[str, list[np.ndarray]] = {t.name: [] for t in meta.targets}
    scores: dict[str, list[np.ndarray]] = {t.name: [] for t in meta.targets}
    for x, y in data:
        interrupts.check()
        ids.append(np.asarray(x[spec.ROW_ID_KEY]))
        if not options.with_row_id:
            x = x[ds.feature.name] if len(meta.features) == 1 else {k: v for k, v in x.items() if k != spec.ROW_ID_KEY}
        out = call(x)
        out = out if isinstance(out, dict) else {meta.targets[0].name: out}
        y = y if isinstance(y, dict) else {meta.targets[0].name: y}
        for t in meta.targets:
            truth[t.name].append(np.asarray(y[t.name]))
            scores[t.name].append(np.asarray(out[t.name]))
    if not ids:
        empty = {t.name: np.zeros((0, *t.value_shape)) for t in meta.targets}
        return np.zeros(0, np.int64), empty, {t.name: np.zeros((0, *(t.value_shape or (1,)))) for t in meta.targets}
    joined = {k: np.concatenate(v) for k, v in truth.items()}
    joined = {k: v.astype(np.int64) if meta.target(k).kind == "class" else v for k, v in joined.items()}
    return np.concatenate(ids), joined, {k: np.concatenate(v) for k, v in scores.items()}


def evaluate_run(
    run_dir: str, dataset: str, split: str = "test", batch_size: int | None = None, other_dataset: bool = False,
    readahead_mb: float | None = None,
) -> dict[str, Any]:
    """Rebuild a run's model from config.json + model.weights.h5 and evaluate it on a dataset split, with the
    run's own settings (precision, XLA, sequence encoding, batch size), so the numbers are the run's.

    Refuses a dataset other than the one the run was trained on (its splits may overlap the training data)
    unless ``other_dataset``. Writes ``evaluation_<split>_<dataset id>.json`` and
    ``confusion_<split>_<dataset id>.png``: one file per split and dataset, so no evaluation replaces another.
    """
    saved = rundir.read_config(run_dir)
    if saved is None:
        raise DatasetError(f"{os.path.join(run_dir, rundir.CONFIG_FILE)}: missing or unreadable; {run_dir} is not a shardkit-train run directory")
    config = FitConfig(**{k: v for k, v in saved.items() if k in {f.name for f in dataclasses.fields(FitConfig)}})
    if readahead_mb is not None:
        config = dataclasses.replace(config, readahead_mb=readahead_mb)
    trained_id = saved.get("dataset_id")
    trained_on = (rundir.read_json(os.path.join(run_dir, "metrics.json")) or {}).get("dataset", config.dataset)
    log(f"{run_dir} was trained on {trained_on} (dataset id {trained_id or 'not recorded'})")
    set_precision(config.precision)
    ds = reader.open_dataset(dataset, config.skip_corrupt)
    if split not in ds.counts:
        raise DatasetError(f"{dataset}: has no {split} split (it has {', '.join(ds.counts)}); choose one with --split")
    before = integrity.snapshot(ds)
    try:
        model = models.build_model(config.model, ds.metadata, config.read_options(), dataset)
        options = config.read_options(with_row_id="row_id" in models.input_names(model))
        models.check_model(model, ds.metadata, options, dataset)
    except DatasetError as e:
        raise DatasetError(f"{models.run_describe(run_dir, config.model, trained_on)}; {e}") from e
    models.check_run_fits(model, run_dir, trained_on, config.model, dataset)
    same = trained_id == ds.metadata.dataset_id if trained_id else os.path.abspath(dataset) == os.path.abspath(trained_on)
    if not same and not other_dataset:
        raise ValueError(
            f"{dataset}: dataset id {ds.metadata.dataset_id} is not the one {run_dir} was trained on "
            f"({trained_id or 'not recorded'}, {trained_on}); its splits may overlap that training data; "
            "pass --other-dataset to evaluate on it anyway"
        )
    config = dataclasses.replace(config, backend=backends.current())  # evaluated on this process' backend
    models.compile_model(model, ds.metadata, config.learning_rate, _jit(config), quiet=True)
    model.optimizer.build(model.trainable_variables)
    try:
        model.load_weights(os.path.join(run_dir, "model.weights.h5"))
        models.restore_state(model)
    except ValueError as e:
        reason = str(e).strip().splitlines()[0]
        raise DatasetError(f"{models.run_describe(run_dir, config.model, trained_on)}; its weights do not fit "
                           f"the model built for {dataset}: {reason}") from e
    name = f"{split}_{ds.metadata.dataset_id}"
    try:
        result = evaluate_split(model, ds, split, batch_size or config.batch_size, options, None, run_dir, name)
    except tf.errors.OpError as e:
        error = integrity.read_error(ds, before, e)
        if error is None:
            raise
        raise error from e
    integrity.check_unchanged(ds, before, "before writing the evaluation")
    result["dataset"] = os.path.abspath(dataset)
    result["dataset_id"] = ds.metadata.dataset_id
    result["split"] = split
    result["backend"], result["backend_version"] = config.backend, backends.version(config.backend)
    result["trained_on"] = {"dataset": trained_on, "dataset_id": trained_id}
    spec.write_json(os.path.join(run_dir, f"evaluation_{name}.json"), result)
    return result

