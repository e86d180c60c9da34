"""Model presets from the users' seeds, user model callables, and the loss/metrics the dataset spec implies."""

from __future__ import annotations

import importlib
import json
import os
import sys
import traceback
import zipfile
from typing import Any, Callable

import keras
import numpy as np

from shardkit.spec import DatasetError, Feature, Metadata, Target
from shardkit.train import features as kinds
from shardkit.train.dataset import ReadOptions

PRESETS = ("knot-cnn", "protein-cnn", "sequence-lstm", "tabular")
PRESET_FOR_KIND = {"image": "knot-cnn", "sequence": "protein-cnn", "array": "sequence-lstm"}
KNOT_CNN_MIN_SIZE = 18  # valid 3x3 conv, pool, conv, pool, valid 3x3 conv, pool: 18 px -> 1 px


def _head(x: keras.KerasTensor, num_classes: int, name: str = "preds") -> keras.KerasTensor:
    """Softmax over the classes, or one sigmoid unit for two classes; float32 even under mixed precision."""
    if num_classes == 2:
        return keras.layers.Dense(1, activation="sigmoid", dtype="float32", name=name)(x)
    return keras.layers.Dense(num_classes, activation="softmax", dtype="float32", name=name)(x)


def target_head(x: keras.KerasTensor, target: Target, name: str | None = None) -> keras.KerasTensor:
    """The output for one target, float32: class as ``_head``; multilabel one sigmoid per label; regression
    linear units of the target's shape."""
    name = name or target.name
    if target.kind == "class":
        return _head(x, target.num_classes, name)
    if target.kind == "multilabel":
        return keras.layers.Dense(target.num_classes, activation="sigmoid", dtype="float32", name=name)(x)
    if not target.shape:
        return keras.layers.Dense(1, dtype="float32", name=name)(x)
    y = keras.layers.Dense(int(np.prod(target.shape)), dtype="float32")(x)
    return keras.layers.Reshape(target.shape, dtype="float32", name=name)(y)


def heads(x: keras.KerasTensor, metadata: Metadata) -> keras.KerasTensor | dict[str, keras.KerasTensor]:
    """One output per target: a bare output for one target (a class target's named ``preds``, as before),
    else a dict keyed by target name, which is how the reader yields several targets."""
    if len(metadata.targets) == 1:
        t = metadata.targets[0]
        return target_head(x, t, "preds" if t.kind == "class" else None)
    return {t.name: target_head(x, t) for t in metadata.targets}


def _input(metadata: Metadata, options: ReadOptions, feature: Feature | None = None) -> keras.KerasTensor:
    f = feature or metadata.features[0]
    shape, dtype = kinds.input_signature(f, options)
    return keras.Input(shape, dtype=dtype, name=f.name)


def knot_cnn(metadata: Metadata, options: ReadOptions = ReadOptions()) -> keras.Model:
    """The knot-image classifier: Conv2D 64/BN/relu/pool, Conv2D 96 same/pool, Conv2D 128/pool, Dense 128, Dropout .5.

    Takes uint8 images and rescales on the device (the reader never materialises float images). BN momentum
    0.9 so the moving statistics settle within tens of steps (the validation numbers use them)."""
    f = _require(metadata, "knot-cnn", "image", rank=3)
    if min(f.shape[:2]) < KNOT_CNN_MIN_SIZE:
        raise DatasetError(
            f"model knot-cnn needs images of at least {KNOT_CNN_MIN_SIZE}x{KNOT_CNN_MIN_SIZE} pixels; this dataset's "
            f"images are {f.shape[0]}x{f.shape[1]} (convert them larger, or pass your own --model pkg.module:build)"
        )
    inputs = _input(metadata, options)
    x = inputs if options.rescale_images else keras.layers.Rescaling(1 / 255.0)(inputs)
    x = keras.layers.Conv2D(64, 3)(x)
    x = keras.layers.BatchNormalization(momentum=0.9)(x)
    x = keras.layers.Activation("relu")(x)
    x = keras.layers.MaxPooling2D(2)(x)
    x = keras.layers.Conv2D(96, 3, padding="same", activation="relu")(x)
    x = keras.layers.MaxPooling2D(2)(x)
    x = keras.layers.Conv2D(128, 3, activation="relu")(x)
    x = keras.layers.MaxPooling2D(2)(x)
    x = keras.layers.Flatten()(x) if f.shape[0] <= 64 else keras.layers.GlobalAveragePooling2D()(x)
    return _classifier(inputs, x, metadata, 128, 0.5, "knot_cnn")


def protein_cnn(metadata: Metadata, options: ReadOptions = ReadOptions()) -> keras.Model:
    """1-D convolutions over the one-hot (L x 21) sequence (or an Embedding of the integer codes)."""
    f = _require(metadata, "protein-cnn", "sequence", rank=1)
    inputs = _input(metadata, options)
    x = keras.layers.Embedding(f.num_codes, 16)(inputs) if options.sequence_encoding == "codes" else inputs
    x = keras.layers.Conv1D(64, 9, padding="same", activation="relu")(x)
    x = keras.layers.MaxPooling1D(3)(x)
    x = keras.layers.Conv1D(128, 9, padding="same", activation="relu")(x)
    x = keras.layers.GlobalMaxPooling1D()(x)
    return _classifier(inputs, x, metadata, 64, 0.3, "protein_cnn")


def sequence_lstm(metadata: Metadata, options: ReadOptions = ReadOptions()) -> keras.Model:
    """An LSTM over (timesteps, dim) feature sequences, Dense, Dropout, sigmoid for two classes."""
    f = _require(metadata, "sequence-lstm", "array", rank=2)
    inputs = _input(metadata, options)
    x = keras.layers.LSTM(min(256, f.shape[-1]), dropout=0.5)(inputs)
    return _classifier(inputs, x, metadata, min(512, 2 * f.shape[-1]), 0.5, "sequence_lstm")


def _classifier(inputs: Any, x: Any, metadata: Metadata, units: int, dropout: float, name: str) -> keras.Model:
    """The presets' common end: Dense(``units``, relu), Dropout, then the dataset's output heads."""
    x = keras.layers.Dropout(dropout)(keras.layers.Dense(units, activation="relu")(x))
    return keras.Model(inputs, heads(x, metadata), name=name)


def _require(metadata: Metadata, preset: str, kind: str, rank: int) -> Feature:
    if len(metadata.features) > 1:
        names = ", ".join(f"{f.name} ({f.kind})" for f in metadata.features)
        raise DatasetError(f"model {preset} takes one {kind} feature, but this dataset has {len(metadata.features)}: "
                           f"{names} (try --model tabular, which takes any set of features)")
    f = metadata.features[0]
    if f.kind != kind or len(f.shape) != rank:
        fits = PRESET_FOR_KIND.get(f.kind, "tabular")
        raise DatasetError(
            f"model {preset} needs {_a(kind)} feature of rank {rank}, but this dataset's feature {f.name!r} is "
            f"{_a(f.kind)} of shape {tuple(f.shape)}" + (f" (try --model {fits})" if fits != preset else "")
        )
    return f


def tabular(metadata: Metadata, options: ReadOptions = ReadOptions(), sample: dict[str, np.ndarray] | None = None) -> keras.Model:
    """Any set of features, one head per target: an Embedding per category, Normalization of scalars and
    arrays (mean and variance of ``sample``, training values by feature name; without it, none), average and
    max pooling over the leading axes of arrays of rank 2 or more, a 1-D convolution and max pooling over
    sequences, two small convolutions and average pooling over images; then Dense 64 and the heads."""
    sample = sample or {}
    inputs, parts = {}, []
    for f in metadata.features:
        inp = _input(metadata, options, f)
        inputs[f.name] = inp
        parts.append(_encode(f, inp, options, sample.get(f.name)))
    x = parts[0] if len(parts) == 1 else keras.layers.Concatenate()(parts)
    x = keras.layers.Dense(64, activation="relu")(x)
    x = keras.layers.Dropout(0.1)(x)
    taken = list(inputs.values())  # matched to the reader's dict by name; one feature comes bare
    return keras.Model(taken[0] if len(taken) == 1 else taken, heads(x, metadata), name="tabular")


def _encode(f: Feature, inp: keras.KerasTensor, options: ReadOptions, values: np.ndarray | None) -> keras.KerasTensor:
    """One feature of ``tabular`` as a flat vector."""
    if f.kind == "category":
        x = keras.layers.Reshape((1,))(inp)
        x = keras.layers.Embedding(len(f.categories or ()), min(16, len(f.categories or ()) + 1))(x)
        return keras.layers.Flatten()(x)
    if f.kind == "image":
        x = inp if options.rescale_images else keras.layers.Rescaling(1 / 255.0)(inp)
        if len(f.shape) == 2:
            x = keras.layers.Reshape((*f.shape, 1))(x)
        x = keras.layers.Conv2D(16, 3, padding="same", activation="relu")(x)
        if min(f.shape[:2]) >= 4:
            x = keras.layers.MaxPooling2D(2)(x)
        x = keras.layers.Conv2D(32, 3, padding="same", activation="relu")(x)
        return keras.layers.GlobalAveragePooling2D()(x)
    if f.kind == "sequence":
        x = keras.layers.Embedding(f.num_codes, 16)(inp) if options.sequence_encoding == "codes" else inp
        x = keras.layers.Conv1D(32, 5, padding="same", activation="relu")(x)
        return keras.layers.GlobalMaxPooling1D()(x)
    x = keras.layers.Reshape((1,))(inp) if f.kind == "scalar" else inp
    if len(f.shape) > 2:
        x = keras.layers.Reshape((-1, f.shape[-1]))(x)
    x = _normalization(values, x.shape[-1])(x)
    if len(x.shape) > 2:
        x = keras.layers.Concatenate()([keras.layers.GlobalAveragePooling1D()(x), keras.layers.GlobalMaxPooling1D()(x)])
    return x


def _normalization(values: np.ndarray | None, width: int) -> keras.layers.Layer:
    """Normalization over the last axis, adapted to the mean and variance of ``values`` (0 and 1 without them).
    Its statistics are weights, so a model rebuilt without ``values`` takes them from ``load_weights``
    (followed by ``restore_state``)."""
    layer = keras.layers.Normalization(axis=-1)
    if values is not None and len(values):
        layer.adapt(np.asarray(values, np.float32).reshape(-1, width))  # every example and position, a column per unit
    return layer


def restore_state(model: keras.Model) -> None:
    """After ``load_weights``: let layers that derive constants from their weights (Normalization's mean and
    variance) recompute them, or they keep the values they were built with."""
    for layer in model.layers:
        if isinstance(layer, keras.layers.Normalization):
            layer.finalize_state()


SAMPLE_RECORDS = 1024


def training_sample(dataset: str, metadata: Metadata, options: ReadOptions) -> dict[str, np.ndarray]:
    """The first ``SAMPLE_RECORDS`` training examples (metadata order) of the scalar and array features, by
    name: what ``tabular`` adapts its normalization to."""
    from shardkit.train import dataset as reader

    wanted = [f.name for f in metadata.features if f.kind in ("scalar", "array")]
    if not wanted or not dataset:
        return {}
    parts: dict[str, list[np.ndarray]] = {name: [] for name in wanted}
    for x, _ in reader.eval_dataset(dataset, "train", 256, options).take(-(-SAMPLE_RECORDS // 256)):
        x = x if isinstance(x, dict) else {metadata.features[0].name: x}
        for name in wanted:
            parts[name].append(x[name].numpy())
    return {name: np.concatenate(v) for name, v in parts.items() if v}


def _a(noun: str) -> str:
    return f"{'an' if noun[:1] in 'aeiou' else 'a'} {noun}"


def build_model(name: str, metadata: Metadata, options: ReadOptions = ReadOptions(), dataset: str = "") -> keras.Model:
    """A preset by name, or ``pkg.module:callable`` called with the dataset's Metadata.

    A preset that cannot take the dataset raises ``DatasetError`` naming ``dataset``; a ``--model`` that cannot
    be imported, or whose callable fails or returns something other than a ``keras.Model``, raises ``ValueError``
    naming the module, the path tried and the way out.
    """
    presets: dict[str, Callable[..., keras.Model]] = {
        "knot-cnn": knot_cnn,
        "protein-cnn": protein_cnn,
        "sequence-lstm": sequence_lstm,
    }
    if name == "tabular":
        return tabular(metadata, options, training_sample(dataset, metadata, options))
    if name in presets:
        try:
            return presets[name](metadata, options)
        except DatasetError as e:
            raise DatasetError(f"{dataset}: {e}" if dataset else str(e)) from e
    if ":" not in name:
        raise ValueError(f"--model {name!r}: not a preset ({', '.join(PRESETS)}) nor pkg.module:callable")
    build = _user_callable(name)
    try:
        model = build(metadata)
    except Exception as e:  # the user's code: one line naming where it failed
        raise ValueError(f"--model {name}: {_called(name)} raised {_one_line(e)}") from e
    if not isinstance(model, keras.Model):
        got = "None" if model is None else f"a {type(model).__name__}"
        raise ValueError(f"--model {name}: {_called(name)} returned {got}, not a keras.Model")
    try:
        model.outputs[0]
    except (AttributeError, IndexError, TypeError):
        raise ValueError(
            f"--model {name}: {_called(name)} returned a model without defined inputs and outputs; build it with "
            "keras.Input(...) (functional, or as a Sequential's first layer) so its shapes can be checked"
        ) from None
    model = _outputs_by_target(model, metadata, name)
    try:
        for target, output in target_outputs(model, metadata):
            if target.kind != "regression":
                outputs_logits(model, output)
    except ValueError as e:
        raise ValueError(f"--model {name}: {e}") from e
    return model


def _outputs_by_target(model: keras.Model, metadata: Metadata, name: str) -> keras.Model:
    """With several targets, the model with its outputs as a dict keyed by target name (a list of outputs
    whose layers are named after the targets is rewrapped); ``ValueError`` naming both sides otherwise."""
    if len(metadata.targets) == 1 or isinstance(model.output, dict):
        return model
    targets = [t.name for t in metadata.targets]
    names = list(model.output_names)
    if sorted(names) != sorted(targets):
        raise ValueError(
            f"--model {name}: the dataset has targets {targets}, and {_called(name)} returned a model whose outputs "
            f"are named {names}; return keras.Model(inputs, {{target name: output}}) with one output per target"
        )
    return keras.Model(model.inputs, dict(zip(names, model.outputs)), name=model.name)


def target_outputs(model: keras.Model, metadata: Metadata) -> list[tuple[Target, keras.KerasTensor]]:
    """Each target with the model output that predicts it (the only output for one target, else by name)."""
    if len(metadata.targets) == 1:
        return [(metadata.targets[0], model.outputs[0])]
    by_name = model.output if isinstance(model.output, dict) else dict(zip(model.output_names, model.outputs))
    return [(t, by_name[t.name]) for t in metadata.targets if t.name in by_name]


def _called(name: str) -> str:
    return f"{name.split(':', 1)[1]}(metadata)"


def _user_callable(name: str) -> Callable[..., keras.Model]:
    """Import ``pkg.module:attr`` the way ``python -m`` would: the working directory first on the path."""
    module_name, attr = name.split(":", 1)
    if not module_name or not attr:
        raise ValueError(f"--model {name!r}: expected pkg.module:callable")
    cwd = os.getcwd()
    if cwd not in sys.path and "" not in sys.path:
        sys.path.insert(0, cwd)
    importlib.invalidate_caches()
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as e:
        if e.name and (module_name == e.name or module_name.startswith(e.name + ".")):
            parent, _, leaf = e.name.rpartition(".")
            base = next(iter(getattr(sys.modules.get(parent), "__path__", [])), cwd) if parent else cwd
            raise ValueError(
                f"--model {name}: no module named {e.name!r} (looked for {os.path.join(base, leaf)}.py and on "
                "PYTHONPATH); run from the directory that holds it, or add that directory to PYTHONPATH"
            ) from e
        raise ValueError(f"--model {name}: importing {module_name} failed: {_one_line(e)}") from e
    except Exception as e:  # SyntaxError, or an error while the module runs
        raise ValueError(f"--model {name}: importing {module_name} failed: {_one_line(e)}") from e
    build = getattr(module, attr, None)
    if build is None:
        where = getattr(module, "__file__", None) or module_name
        raise ValueError(f"--model {name}: {where} has no attribute {attr!r}")
    if not callable(build):
        raise ValueError(f"--model {name}: {module_name}.{attr} is a {type(build).__name__}, not a callable")
    return build


def _one_line(e: BaseException) -> str:
    """``Type: message (file:line)`` of an exception from user code, at its innermost frame outside installed
    packages (site-packages)."""
    message = str(e).strip().splitlines()[0] if str(e).strip() else ""
    if isinstance(e, SyntaxError) and e.filename:
        return f"SyntaxError: {e.msg} ({e.filename}:{e.lineno})"
    frames = [f for f in traceback.extract_tb(e.__traceback__) if "site-packages" not in f.filename]
    where = f" ({frames[-1].filename}:{frames[-1].lineno})" if frames else ""
    return f"{type(e).__name__}: {message}{where}" if message else f"{type(e).__name__}{where}"


def input_names(model: keras.Model) -> list[str]:
    return [getattr(t, "name", "") for t in model.inputs]


def check_model(model: keras.Model, metadata: Metadata, options: ReadOptions, dataset_path: str = "") -> None:
    """Raise ``DatasetError`` naming the dataset when the model's inputs or outputs can't take this spec.

    One feature: the model takes one input (any name). Several: each input is named after the feature it
    takes (``row_id`` too, if wanted); features no input names are not fed. Every target needs its output."""
    where = f"{dataset_path}: " if dataset_path else ""
    candidates = [t for t in model.inputs if getattr(t, "name", "") != "row_id"]
    if len(metadata.features) == 1:
        f = metadata.features[0]
        if len(candidates) != 1:
            raise DatasetError(f"{where}model {model.name} takes {len(candidates)} inputs; the dataset provides one ({f.name})")
        pairs = [(f, candidates[0])]
    else:
        names = [f.name for f in metadata.features]
        unknown = [getattr(t, "name", "") for t in candidates if getattr(t, "name", "") not in names]
        if unknown or not candidates:
            raise DatasetError(
                f"{where}model {model.name} takes inputs {unknown or 'none'} that are not features of this dataset; "
                f"name each keras.Input after the feature it takes: {', '.join(names)}"
            )
        pairs = [(metadata.feature(t.name), t) for t in candidates]
    for f, tensor in pairs:
        expected, _ = kinds.input_signature(f, options)
        got = tuple(tensor.shape[1:])
        if len(got) != len(expected) or any(g is not None and g != e for g, e in zip(got, expected)):
            raise DatasetError(
                f"{where}model {model.name} takes input of shape {got} but the dataset's {f.kind} feature "
                f"{f.name!r} decodes to {tuple(expected)}"
            )
    outputs = dict((t.name, out) for t, out in target_outputs(model, metadata))
    for t in metadata.targets:
        if t.name not in outputs:
            raise DatasetError(f"{where}model {model.name} has no output for target {t.name!r}")
        problem = _output_problem(t, tuple(outputs[t.name].shape[1:]))
        if problem:
            raise DatasetError(f"{where}model {model.name} {problem}")


def _output_problem(target: Target, shape: tuple) -> str | None:
    """Why an output of ``shape`` (no batch axis) can't predict ``target``, or None."""
    units = shape[-1] if shape else 1
    of = "" if target.name == "label" else f" for target {target.name!r}"
    if target.kind == "class":
        k = target.num_classes
        if not (units == k or (k == 2 and units == 1)):
            return f"outputs {units} values{of} but the dataset has {k} classes"
    elif target.kind == "multilabel":
        if units != target.num_classes:
            return f"outputs {units} values{of} but the dataset has {target.num_classes} labels"
    elif int(np.prod([d or 1 for d in shape])) != int(np.prod(target.shape)):
        return f"outputs shape {shape}{of} but the regression target has shape {target.shape}"
    return None


def saved_shapes(model_file: str) -> tuple[tuple, int | None] | None:
    """(input shape without the batch axis, or a tuple of them for several inputs; units of the first output
    layer) recorded in a saved ``.keras`` file; None if unreadable."""
    try:
        with zipfile.ZipFile(model_file) as z:
            config = json.loads(z.read("config.json"))["config"]
        layers = {layer["name"]: layer for layer in config["layers"]}
        shapes = [tuple(layers[i[0]]["config"]["batch_shape"][1:]) for i in _layer_refs(config["input_layers"]) if i[0] != "row_id"]
        units = layers[_layer_refs(config["output_layers"])[0][0]]["config"].get("units")
    except (OSError, KeyError, IndexError, TypeError, ValueError, zipfile.BadZipFile):
        return None
    return (shapes[0] if len(shapes) == 1 else tuple(shapes)), units


def _layer_refs(refs: Any) -> list[list]:
    """The ``[layer, node, index]`` references of a saved model's inputs or outputs, whatever their nesting
    (one, a list, or a dict keyed by name), in the order Keras flattens them."""
    if isinstance(refs, dict):
        return [r for key in sorted(refs) for r in _layer_refs(refs[key])]
    if refs and isinstance(refs[0], str):
        return [refs]
    return [r for item in refs for r in _layer_refs(item)]


def _model_shapes(model: keras.Model) -> tuple[tuple, int | None]:
    """``saved_shapes``' numbers of a model in memory."""
    shapes = [tuple(t.shape[1:]) for t in model.inputs if getattr(t, "name", "") != "row_id"]
    return (shapes[0] if len(shapes) == 1 else tuple(shapes)), model.outputs[0].shape[-1]


def check_run_fits(model: keras.Model, run_dir: str, trained_on: str, model_name: str, dataset: str) -> None:
    """Raise ``DatasetError`` naming both sides when ``model`` (rebuilt for ``dataset``) differs in input shape or
    output width from the model the run saved (``run_dir/model.keras``)."""
    saved = saved_shapes(os.path.join(run_dir, "model.keras"))
    if saved is None:
        return
    got, units = _model_shapes(model)
    if tuple(saved[0]) != got or (saved[1] is not None and saved[1] != units):
        raise DatasetError(
            f"{run_describe(run_dir, model_name, trained_on, saved)}; {dataset} gives it input {got} and "
            f"{units} output(s): evaluate the run on a dataset with the same feature shape and classes"
        )


def run_describe(run_dir: str, model_name: str, trained_on: str, saved: tuple | None = None) -> str:
    """'RUN (model M) was trained on input S with K output(s) from DATASET', as far as the run records it."""
    saved = saved or saved_shapes(os.path.join(run_dir, "model.keras"))
    shapes = f" on input {tuple(saved[0])} with {saved[1]} output(s)" if saved and saved[1] else (
        f" on input {tuple(saved[0])}" if saved else "")
    return f"run {run_dir} (--model {model_name}) was trained{shapes} from {trained_on}"


def outputs_logits(model: keras.Model, output: keras.KerasTensor | None = None) -> bool:
    """Whether an output (default the first) ends without softmax/sigmoid (raw scores, logits); a layer whose
    activation can't be read (a Lambda, a custom layer) counts as probabilities. Refuses an output activation
    that is neither."""
    layer = output_layer(model, output)
    if isinstance(layer, keras.layers.Softmax):
        return False
    activation = getattr(getattr(layer, "activation", None), "__name__", None)
    if activation is None or activation in ("softmax", "sigmoid"):
        return False
    if activation in ("linear", "log_softmax"):
        return True
    raise ValueError(
        f"the model's last layer {layer.name!r} has activation {activation}; end it with softmax "
        "(or one sigmoid unit for two classes), or with no activation to output logits"
    )


def output_layer(model: keras.Model, output: keras.KerasTensor | None = None) -> keras.layers.Layer:
    """The layer that computes an output (default the first), looking through reshaping, identity and dropout layers."""
    layer = (model.outputs[0] if output is None else output)._keras_history.operation
    while isinstance(layer, _PASS_THROUGH) and layer._inbound_nodes:
        layer = layer._inbound_nodes[0].input_tensors[0]._keras_history.operation
    return layer


_PASS_THROUGH = (keras.layers.Reshape, keras.layers.Flatten, keras.layers.Identity, keras.layers.Dropout)


def target_loss(target: Target, units: int, logits: bool) -> tuple[keras.losses.Loss, list]:
    """The loss and metrics of one target whose output has ``units`` values (``logits``: no softmax/sigmoid):

    - class: binary cross-entropy for one unit on two classes, else sparse categorical cross-entropy; accuracy
      (thresholding a binary logit at 0);
    - multilabel: binary cross-entropy; AUC (over all labels) and binary accuracy;
    - regression: mean squared error; mean absolute error.
    """
    if target.kind == "regression":
        return keras.losses.MeanSquaredError(), [keras.metrics.MeanAbsoluteError(name="mae")]
    threshold = 0.0 if logits else 0.5
    if target.kind == "multilabel":
        return keras.losses.BinaryCrossentropy(from_logits=logits), [
            keras.metrics.AUC(name="auc", multi_label=True, num_labels=target.num_classes, from_logits=logits),
            keras.metrics.BinaryAccuracy(name="binary_accuracy", threshold=threshold),
        ]
    if units == 1 and target.num_classes == 2:
        return keras.losses.BinaryCrossentropy(from_logits=logits), [keras.metrics.BinaryAccuracy(name="accuracy", threshold=threshold)]
    return (keras.losses.SparseCategoricalCrossentropy(from_logits=logits),
            [keras.metrics.SparseCategoricalAccuracy(name="accuracy")])


def loss_and_metrics(model: keras.Model, metadata: Metadata) -> tuple[Any, Any]:
    """``target_loss`` of each target: the loss and metric list for one target, dicts keyed by target name for
    several (Keras names their logs ``<target>_loss``, ``<target>_accuracy``, ...)."""
    losses, metrics = {}, {}
    for target, output in target_outputs(model, metadata):
        logits = target.kind != "regression" and outputs_logits(model, output)
        losses[target.name], metrics[target.name] = target_loss(target, output.shape[-1] if len(output.shape) > 1 else 1, logits)
    if len(metadata.targets) == 1:
        name = metadata.targets[0].name
        return losses[name], metrics[name]
    return losses, metrics


def predicted_classes(scores: np.ndarray, model: keras.Model, output: keras.KerasTensor | None = None) -> np.ndarray:
    """Class ids from one output's scores: argmax, or one unit thresholded at 0.5 (at 0 for logits)."""
    if scores.shape[-1] != 1:
        return scores.argmax(-1)
    return (scores[:, 0] > (0.0 if outputs_logits(model, output) else 0.5)).astype(np.int64)


def compile_model(model: keras.Model, metadata: Metadata, learning_rate: float = 1e-3, jit: bool | str = "auto",
                  quiet: bool = False, steps_per_execution: int = 1) -> None:
    """Adam with each target's loss and metrics; says so in one line for each class or multi-label output
    taken as logits."""
    loss, metrics = loss_and_metrics(model, metadata)
    if not quiet:
        for target, output in target_outputs(model, metadata):
            if target.kind != "regression" and outputs_logits(model, output):
                print(f"shardkit-train: the model's last layer {output_layer(model, output).name!r} has no softmax or sigmoid: "
                      "taking its outputs as logits (loss with from_logits=True)", file=sys.stderr, flush=True)
    model.compile(keras.optimizers.Adam(learning_rate), loss=loss, metrics=metrics, jit_compile=jit,
                  steps_per_execution=steps_per_execution)
