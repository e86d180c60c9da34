"""Model presets from the users' seeds, user model callables, and the loss/metrics the dataset spec implies."""

from __future__ import annotations

import importlib
import json
import os
import sys
import traceback
import zipfile
from typing import Callable

import keras
import numpy as np

from shardkit.spec import DatasetError, Feature, Metadata
from shardkit.train.dataset import ReadOptions

PRESETS = ("knot-cnn", "protein-cnn", "sequence-lstm")
PRESET_FOR_KIND = {"image": "knot-cnn", "sequence": "protein-cnn", "array": "sequence-lstm"}
KNOT_CNN_MIN_SIZE = 18  # valid 3x3 conv, pool, conv, pool, valid 3x3 conv, pool: 18 px -> 1 px


def _head(x: keras.KerasTensor, num_classes: int) -> keras.KerasTensor:
    """Softmax over the classes, or one sigmoid unit for two classes; float32 even under mixed precision."""
    if num_classes == 2:
        return keras.layers.Dense(1, activation="sigmoid", dtype="float32", name="preds")(x)
    return keras.layers.Dense(num_classes, activation="softmax", dtype="float32", name="preds")(x)


def _input(metadata: Metadata, options: ReadOptions) -> keras.KerasTensor:
    f = metadata.features[0]
    if f.kind == "image":
        return keras.Input(f.shape, dtype="float32" if options.rescale_images else "uint8", name=f.name)
    if f.kind == "sequence":
        if options.sequence_encoding == "codes":
            return keras.Input(f.shape, dtype="int32", name=f.name)
        return keras.Input((*f.shape, f.num_codes), dtype="float32", name=f.name)
    return keras.Input(f.shape, dtype=f.dtype, name=f.name)


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
    x = keras.layers.Dense(128, activation="relu")(x)
    x = keras.layers.Dropout(0.5)(x)
    return keras.Model(inputs, _head(x, metadata.label.num_classes), name="knot_cnn")


def protein_cnn(metadata: Metadata, options: ReadOptions = ReadOptions()) -> keras.Model:
    """1-D convolutions over the one-hot (L x 21) sequence (or an Embedding of the integer codes)."""
    f = _require(metadata, "protein-cnn", "sequence", rank=1)
    inputs = _input(metadata, options)
    x = keras.layers.Embedding(f.num_codes, 16)(inputs) if options.sequence_encoding == "codes" else inputs
    x = keras.layers.Conv1D(64, 9, padding="same", activation="relu")(x)
    x = keras.layers.MaxPooling1D(3)(x)
    x = keras.layers.Conv1D(128, 9, padding="same", activation="relu")(x)
    x = keras.layers.GlobalMaxPooling1D()(x)
    x = keras.layers.Dense(64, activation="relu")(x)
    x = keras.layers.Dropout(0.3)(x)
    return keras.Model(inputs, _head(x, metadata.label.num_classes), name="protein_cnn")


def sequence_lstm(metadata: Metadata, options: ReadOptions = ReadOptions()) -> keras.Model:
    """An LSTM over (timesteps, dim) feature sequences, Dense, Dropout, sigmoid for two classes."""
    f = _require(metadata, "sequence-lstm", "array", rank=2)
    inputs = _input(metadata, options)
    x = keras.layers.LSTM(min(256, f.shape[-1]), dropout=0.5)(inputs)
    x = keras.layers.Dense(min(512, 2 * f.shape[-1]), activation="relu")(x)
    x = keras.layers.Dropout(0.5)(x)
    return keras.Model(inputs, _head(x, metadata.label.num_classes), name="sequence_lstm")


def _require(metadata: Metadata, preset: str, kind: str, rank: int) -> Feature:
    f = metadata.features[0]
    if f.kind != kind or len(f.shape) != rank:
        fits = PRESET_FOR_KIND.get(f.kind)
        raise DatasetError(
            f"model {preset} needs {_a(kind)} feature of rank {rank}, but this dataset's feature {f.name!r} is "
            f"{_a(f.kind)} of shape {tuple(f.shape)}" + (f" (try --model {fits})" if fits and fits != preset else "")
        )
    return f


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
    try:
        outputs_logits(model)
    except ValueError as e:
        raise ValueError(f"--model {name}: {e}") from e
    return model


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
    """Raise ``DatasetError`` naming the dataset when the model's input or output can't take this spec."""
    f = metadata.features[0]
    where = f"{dataset_path}: " if dataset_path else ""
    expected = tuple(_input(metadata, options).shape[1:])
    candidates = [t for t in model.inputs if getattr(t, "name", "") != "row_id"]
    if len(candidates) != 1:
        raise DatasetError(f"{where}model {model.name} takes {len(candidates)} inputs; the dataset provides one ({f.name})")
    got = tuple(candidates[0].shape[1:])
    if len(got) != len(expected) or any(g is not None and g != e for g, e in zip(got, expected)):
        raise DatasetError(
            f"{where}model {model.name} takes input of shape {got} but the dataset's {f.kind} feature "
            f"{f.name!r} decodes to {expected}"
        )
    units = model.outputs[0].shape[-1]
    k = metadata.label.num_classes
    if not (units == k or (k == 2 and units == 1)):
        raise DatasetError(f"{where}model {model.name} outputs {units} values but the dataset has {k} classes")


def saved_shapes(model_file: str) -> tuple[tuple, int | None] | None:
    """(input shape without the batch axis, output units) recorded in a saved ``.keras`` file; None if unreadable."""
    try:
        with zipfile.ZipFile(model_file) as z:
            config = json.loads(z.read("config.json"))["config"]
        layers = {layer["name"]: layer for layer in config["layers"]}
        ins = [config["input_layers"]] if isinstance(config["input_layers"][0], str) else config["input_layers"]
        shapes = [tuple(layers[i[0]]["config"]["batch_shape"][1:]) for i in ins if i[0] != "row_id"]
        outs = [config["output_layers"]] if isinstance(config["output_layers"][0], str) else config["output_layers"]
        units = layers[outs[0][0]]["config"].get("units")
    except (OSError, KeyError, IndexError, TypeError, ValueError, zipfile.BadZipFile):
        return None
    return (shapes[0] if len(shapes) == 1 else tuple(shapes)), units


def check_run_fits(model: keras.Model, run_dir: str, trained_on: str, model_name: str, dataset: str) -> None:
    """Raise ``DatasetError`` naming both sides when ``model`` (rebuilt for ``dataset``) differs in input shape or
    output width from the model the run saved (``run_dir/model.keras``)."""
    saved = saved_shapes(os.path.join(run_dir, "model.keras"))
    if saved is None:
        return
    got = tuple(next(t for t in model.inputs if getattr(t, "name", "") != "row_id").shape[1:])
    units = model.outputs[0].shape[-1]
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


def outputs_logits(model: keras.Model) -> bool:
    """Whether the model ends without softmax/sigmoid (raw scores, logits); a layer whose activation can't be
    read (a Lambda, a custom layer) counts as probabilities. Refuses an output activation that is neither."""
    layer = output_layer(model)
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


def output_layer(model: keras.Model) -> keras.layers.Layer:
    """The layer that computes the model's output, looking through reshaping, identity and dropout layers."""
    layer = model.outputs[0]._keras_history.operation
    while isinstance(layer, _PASS_THROUGH) and layer._inbound_nodes:
        layer = layer._inbound_nodes[0].input_tensors[0]._keras_history.operation
    return layer


_PASS_THROUGH = (keras.layers.Reshape, keras.layers.Flatten, keras.layers.Identity, keras.layers.Dropout)


def loss_and_metrics(model: keras.Model, metadata: Metadata) -> tuple[keras.losses.Loss, list]:
    """Binary cross-entropy for one output unit on two classes, else sparse categorical cross-entropy; both
    ``from_logits`` when the model outputs logits (accuracy then thresholds binary logits at 0)."""
    logits = outputs_logits(model)
    if model.outputs[0].shape[-1] == 1 and metadata.label.num_classes == 2:
        accuracy = keras.metrics.BinaryAccuracy(name="accuracy", threshold=0.0 if logits else 0.5)
        return keras.losses.BinaryCrossentropy(from_logits=logits), [accuracy]
    return (keras.losses.SparseCategoricalCrossentropy(from_logits=logits),
            [keras.metrics.SparseCategoricalAccuracy(name="accuracy")])


def predicted_classes(scores: np.ndarray, model: keras.Model) -> np.ndarray:
    """Class ids from ``model.predict`` scores: argmax, or one unit thresholded at 0.5 (at 0 for logits)."""
    if scores.shape[-1] != 1:
        return scores.argmax(-1)
    return (scores[:, 0] > (0.0 if outputs_logits(model) else 0.5)).astype(np.int64)


def compile_model(model: keras.Model, metadata: Metadata, learning_rate: float = 1e-3, jit: bool | str = "auto",
                  quiet: bool = False, steps_per_execution: int = 1) -> None:
    """Adam with the spec's loss and accuracy; says so in one line when the model's outputs are taken as logits."""
    loss, metrics = loss_and_metrics(model, metadata)
    if loss.get_config().get("from_logits") and not quiet:
        print(f"shardkit-train: the model's last layer {output_layer(model).name!r} has no softmax or sigmoid: "
              "taking its outputs as logits (loss with from_logits=True)", file=sys.stderr, flush=True)
    model.compile(keras.optimizers.Adam(learning_rate), loss=loss, metrics=metrics, jit_compile=jit,
                  steps_per_execution=steps_per_execution)
