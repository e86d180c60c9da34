"""What the trainer feeds a model: per-kind tensors of every feature and target, assembled into ``(x, y)``.

The reader parses a batch into stored values (``decode.decode_records``: name -> tensor in its stored dtype,
batch first, bytes features already decoded to arrays of their shape); ``assembler`` turns those into what
a model takes:

=========  ===============================================================================
feature    tensor per example
=========  ===============================================================================
image      uint8 ``shape`` (float32 in [0, 1] with ``rescale_images``)
sequence   float32 one-hot ``(L, codes)``, or int32 codes ``(L,)`` with ``sequence_encoding="codes"``
array      its stored float dtype, ``shape``
scalar     float32 ``()`` (int64 scalars too: a model wants numbers, not ids; exact up to 2**24)
category   int32 ``()``: the index into ``Feature.categories``, for an Embedding
=========  ===============================================================================

Targets: class int32 ``()``, multilabel float32 multi-hot ``(num_classes,)``, regression float32 ``shape``.

A dataset with one feature and one target yields bare tensors ``(x, y)``, as format version 1 did; any
other yields ``x`` as a dict keyed by feature name and ``y`` bare for one target, else a dict keyed by
target name. ``with_row_id`` adds ``row_id`` to ``x`` (making a bare ``x`` a dict ``{feature: x, "row_id": ids}``).
"""

from __future__ import annotations

from typing import Any, Callable, Mapping

import tensorflow as tf

from shardkit import spec
from shardkit.spec import Feature, Metadata, Target
from shardkit.train.options import ReadOptions


def input_signature(feature: Feature, options: ReadOptions = ReadOptions()) -> tuple[tuple[int, ...], str]:
    """(shape without the batch axis, dtype) of one feature as the reader yields it."""
    if feature.kind == "image":
        return feature.shape, "float32" if options.rescale_images else "uint8"
    if feature.kind == "sequence":
        if options.sequence_encoding == "codes":
            return feature.shape, "int32"
        return (*feature.shape, feature.num_codes), "float32"
    if feature.kind == "scalar":
        return (), "float32"
    if feature.kind == "category":
        return (), "int32"
    return feature.shape, feature.dtype


def feature_tensor(feature: Feature, stored: tf.Tensor, options: ReadOptions = ReadOptions()) -> tf.Tensor:
    """A batch of one feature's stored values (decoded bytes, or the int64/float32 value) as the model takes it."""
    x = stored
    if feature.kind == "image":
        return tf.cast(x, tf.float32) / 255.0 if options.rescale_images else x
    if feature.kind == "sequence":
        x = tf.cast(x, tf.int32)
        return tf.one_hot(x, feature.num_codes, dtype=tf.float32) if options.sequence_encoding == "onehot" else x
    if feature.kind == "scalar":
        return tf.cast(x, tf.float32)
    if feature.kind == "category":
        return tf.cast(x, tf.int32)
    return x


def target_tensor(target: Target, stored: tf.Tensor) -> tf.Tensor:
    """A batch of one target's stored values as the loss takes it: int32 class ids, float32 otherwise."""
    return tf.cast(stored, tf.int32 if target.kind == "class" else tf.float32)


def assembler(metadata: Metadata, options: ReadOptions = ReadOptions()) -> Callable[[Mapping[str, tf.Tensor]], tuple[Any, Any]]:
    """A graph function: stored values of a batch (name -> tensor) -> ``(x, y)`` as the module docstring says."""
    features, targets = metadata.features, metadata.targets

    def assemble(stored: Mapping[str, tf.Tensor]) -> tuple[Any, Any]:
        xs = {f.name: feature_tensor(f, stored[f.name], options) for f in features}
        ys = {t.name: target_tensor(t, stored[t.name]) for t in targets}
        y = ys[targets[0].name] if len(targets) == 1 else ys
        if metadata.single and not options.with_row_id:
            return xs[features[0].name], y
        if options.with_row_id:
            xs[spec.ROW_ID_KEY] = stored[spec.ROW_ID_KEY]
        return xs, y

    return assemble
