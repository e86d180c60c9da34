"""Model presets from the users' seeds, user model callables, and the loss/metrics the dataset spec implies."""

from __future__ import annotations

import importlib
from typing import Callable

import keras

from shardkit.spec import DatasetError, Metadata
from shardkit.train.dataset import ReadOptions

PRESETS = ("knot-cnn", "protein-cnn", "sequence-lstm")


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
    """Seed 000's stack: Conv2D 64/BN/relu/pool, Conv2D 96 same/pool, Conv2D 128/pool, Dense 128, Dropout .5.

    Takes uint8 images and rescales on the device (the reader never materialises float images). BN momentum
    0.9 so the moving statistics settle within tens of steps (the validation numbers use them)."""
    f = _require(metadata, "knot-cnn", "image", rank=3)
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
    """Seed 003: an LSTM over (timesteps, dim) feature sequences, Dense, Dropout, sigmoid for two classes."""
    f = _require(metadata, "sequence-lstm", "array", rank=2)
    inputs = _input(metadata, options)
    x = keras.layers.LSTM(min(256, f.shape[-1]), dropout=0.5)(inputs)
    x = keras.layers.Dense(min(512, 2 * f.shape[-1]), activation="relu")(x)
    x = keras.layers.Dropout(0.5)(x)
    return keras.Model(inputs, _head(x, metadata.label.num_classes), name="sequence_lstm")


def _require(metadata: Metadata, preset: str, kind: str, rank: int):
    f = metadata.features[0]
    if f.kind != kind or len(f.shape) != rank:
        raise DatasetError(
            f"model {preset} needs a {kind} feature of rank {rank}; this dataset's feature {f.name!r} is a "
            f"{f.kind} of shape {f.shape}"
        )
    return f


def build_model(name: str, metadata: Metadata, options: ReadOptions = ReadOptions()) -> keras.Model:
    """A preset by name, or ``pkg.module:callable`` called with the dataset's Metadata."""
    presets: dict[str, Callable[..., keras.Model]] = {
        "knot-cnn": knot_cnn,
        "protein-cnn": protein_cnn,
        "sequence-lstm": sequence_lstm,
    }
    if name in presets:
        return presets[name](metadata, options)
    if ":" not in name:
        raise ValueError(f"--model {name!r}: not a preset {PRESETS} nor pkg.module:callable")
    module_name, attr = name.split(":", 1)
    build = getattr(importlib.import_module(module_name), attr)
    model = build(metadata)
    if not isinstance(model, keras.Model):
        raise TypeError(f"--model {name}: returned {type(model).__name__}, not a keras.Model")
    return model


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


def loss_and_metrics(model: keras.Model, metadata: Metadata) -> tuple[keras.losses.Loss, list]:
    """Binary cross-entropy for one sigmoid output on two classes, else sparse categorical cross-entropy."""
    if model.outputs[0].shape[-1] == 1 and metadata.label.num_classes == 2:
        return keras.losses.BinaryCrossentropy(), [keras.metrics.BinaryAccuracy(name="accuracy")]
    return keras.losses.SparseCategoricalCrossentropy(), [keras.metrics.SparseCategoricalAccuracy(name="accuracy")]


def compile_model(model: keras.Model, metadata: Metadata, learning_rate: float = 1e-3, jit: bool | str = "auto") -> None:
    loss, metrics = loss_and_metrics(model, metadata)
    model.compile(keras.optimizers.Adam(learning_rate), loss=loss, metrics=metrics, jit_compile=jit)
