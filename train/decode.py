"""Batches of serialized records -> named tensors, and the reader's tensors -> numpy arrays without a copy.

``decode_records`` turns one batch of records into one tensor per feature, per target, per sequence length and
``row_id``: one vectorised ``parse_example`` for the batch, then each bytes feature decoded by its encoding.
Locating a raw payload at its known byte offset instead of parsing was measured too (docs/benchmarks.md):
``decode_raw`` reads only from the start of a string, so cutting the payload out of the record costs a
second copy, the same two copies ``parse_example`` + ``decode_raw`` make; it is not used.
"""

from __future__ import annotations

from typing import Any, Iterable, Iterator, Sequence

import numpy as np
import tensorflow as tf

from shardkit import spec
from shardkit.spec import Feature, Target


def decode_feature(values: tf.Tensor, feature: Feature) -> tf.Tensor:
    """One feature's parsed values for a batch -> a (batch, *shape) tensor of its dtype.

    Bytes kinds are decoded (raw little-endian bytes, PNG, sequence codes); scalars and categories are
    already numbers and come back as they were parsed.
    """
    if not feature.stored_as_bytes:
        return values
    if feature.encoding == "png":
        return tf.map_fn(
            lambda b: tf.io.decode_png(b, channels=feature.shape[-1]),
            values,
            fn_output_signature=tf.TensorSpec(feature.shape, tf.uint8),
        )
    return tf.reshape(tf.io.decode_raw(values, tf.as_dtype(feature.dtype)), (-1, *feature.shape))


def decode_records(
    serialized: tf.Tensor, features: Sequence[Feature], targets: Sequence[Target] = (Target(),)
) -> dict[str, tf.Tensor]:
    """A batch of serialized records -> {key: batch tensor} for every key of the record.

    Keys are each feature's name (decoded by ``decode_feature``), ``<name>_length`` (int64) for sequences,
    each target's name (class int64, multilabel int64 (batch, classes), regression float32) and ``row_id``.
    A record that lacks a key, or holds a value of the wrong size, fails the batch (``InvalidArgumentError``).
    """
    parsed = tf.io.parse_example(serialized, spec.parse_spec(tuple(features), tuple(targets)))
    for feature in features:
        parsed[feature.name] = decode_feature(parsed[feature.name], feature)
    return parsed


def as_numpy(batches: Iterable[Any]) -> Iterator[Any]:
    """The batches of a reader's stream as numpy arrays that share the tensors' memory (read-only),
    with the stream's structure (tuples, dicts) kept.

    ``Tensor.numpy()`` copies every batch; a consumer outside TensorFlow (numpy, JAX) can take the batch
    as it is instead. Each array keeps its tensor's buffer alive.
    """
    for batch in batches:
        yield tf.nest.map_structure(np.asarray, batch)
