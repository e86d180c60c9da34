"""The shardkit dataset format: feature spec, example bytes and ``metadata.json``.

This is the one contract between the converter (which writes it) and the trainer (which reads it).
It depends on numpy and TensorFlow only, never on Beam or PyTables, so the training image stays small.

A dataset directory looks like::

    OUT/metadata.json
    OUT/train/train-00000-of-00004.tfrecord[.gz]
    OUT/validation/validation-00000-of-00001.tfrecord[.gz]
    OUT/test/test-00000-of-00001.tfrecord[.gz]

Every record is a ``tf.train.Example`` with one bytes feature per payload feature (raw uint8 / PNG /
float bytes, or uint8 amino-acid codes), an int64 ``<name>_length`` for sequences, and the int64
``label`` and ``row_id`` every example carries.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
from dataclasses import dataclass, field
from typing import Any, Mapping

import numpy as np

FORMAT_VERSION = 1
METADATA_FILE = "metadata.json"
SPLITS = ("train", "validation", "test")
LABEL_KEY = "label"
ROW_ID_KEY = "row_id"
LENGTH_SUFFIX = "_length"

KINDS = ("image", "sequence", "array")
ENCODINGS = {"image": ("raw", "png"), "sequence": ("codes",), "array": ("raw",)}
AMINO_ACIDS = {20: "ACDEFGHIKLMNPQRSTVWY", 25: "ACDEFGHIKLMNPQRSTVWYXBUOZ"}


class DatasetError(Exception):
    """A dataset on disk is missing, partial, or does not match its metadata."""


@dataclass(frozen=True)
class Feature:
    """One payload feature: what it is, its decoded shape and dtype, and how its bytes are encoded.

    ``vocabulary`` (sequences only) lists the letters coded 1..len; code 0 is padding/unknown.
    """

    name: str
    kind: str
    shape: tuple[int, ...]
    dtype: str
    encoding: str
    vocabulary: str | None = None

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise ValueError(f"feature {self.name!r}: unknown kind {self.kind!r}, expected one of {KINDS}")
        if self.encoding not in ENCODINGS[self.kind]:
            raise ValueError(f"feature {self.name!r}: encoding {self.encoding!r} is not valid for {self.kind}")
        if self.name in (LABEL_KEY, ROW_ID_KEY):
            raise ValueError(f"feature name {self.name!r} is reserved")
        object.__setattr__(self, "shape", tuple(int(d) for d in self.shape))

    @property
    def num_codes(self) -> int:
        """Number of distinct codes of a sequence feature, padding/unknown 0 included."""
        return len(self.vocabulary or "") + 1

    @property
    def raw_nbytes(self) -> int:
        """Bytes of one decoded example of this feature."""
        return int(np.prod(self.shape)) * np.dtype(self.dtype).itemsize

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> "Feature":
        return cls(**{**d, "shape": tuple(d["shape"])})


@dataclass(frozen=True)
class LabelSpec:
    """Class labels: stored as int64 0..num_classes-1; ``names[i]`` is what class i was in the source."""

    num_classes: int
    names: tuple[str, ...]
    source_kind: str = "int"  # "int", "string" or "onehot"
    display_names: tuple[str, ...] | None = None  # what people call the classes (--class-names), if given

    @property
    def titles(self) -> tuple[str, ...]:
        """Class names for people: the display names where given, else the source values."""
        return self.display_names or self.names

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> "LabelSpec":
        display = d.get("display_names")
        return cls(**{**d, "names": tuple(d["names"]), "display_names": tuple(display) if display else None})


@dataclass(frozen=True)
class ShardInfo:
    path: str  # relative to the dataset directory
    count: int
    bytes: int
    class_counts: tuple[int, ...]
    crc32c: int | None = None  # CRC32C of the shard's uncompressed TFRecord bytes; None in older datasets

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> "ShardInfo":
        return cls(**{**d, "class_counts": tuple(d["class_counts"])})


@dataclass(frozen=True)
class SplitInfo:
    count: int
    class_counts: tuple[int, ...]
    shards: tuple[ShardInfo, ...]

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> "SplitInfo":
        return cls(
            count=d["count"],
            class_counts=tuple(d["class_counts"]),
            shards=tuple(ShardInfo.from_dict(s) for s in d["shards"]),
        )


@dataclass(frozen=True)
class Metadata:
    """Everything a reader needs (spec, counts, shards) plus provenance; serialised as metadata.json."""

    features: tuple[Feature, ...]
    label: LabelSpec
    splits: Mapping[str, SplitInfo]
    compression: str | None = None  # None or "GZIP"
    seed: int | None = None
    source: Mapping[str, Any] = field(default_factory=dict)
    stats: Mapping[str, Any] = field(default_factory=dict)
    tool_version: str = ""
    created: str = ""
    format_version: int = FORMAT_VERSION
    dataset_id: str = ""  # content_id(): changes whenever a record does; runs record the id they read

    def feature(self, name: str) -> Feature:
        for f in self.features:
            if f.name == name:
                return f
        raise KeyError(f"no feature {name!r}; features are {[f.name for f in self.features]}")

    def shard_paths(self, dataset_dir: str, split: str) -> list[str]:
        """Absolute paths of a split's shards, in metadata order."""
        if split not in self.splits:
            raise DatasetError(f"{dataset_dir}: no split {split!r}; splits are {sorted(self.splits)}")
        return [os.path.join(dataset_dir, s.path) for s in self.splits[split].shards]

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2, sort_keys=True, default=_json_default)

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> "Metadata":
        version = d.get("format_version")
        if version != FORMAT_VERSION:
            raise DatasetError(f"unsupported format_version {version!r}; this shardkit reads {FORMAT_VERSION}")
        meta = cls(
            features=tuple(Feature.from_dict(f) for f in d["features"]),
            label=LabelSpec.from_dict(d["label"]),
            splits={k: SplitInfo.from_dict(v) for k, v in d["splits"].items()},
            compression=d.get("compression"),
            seed=d.get("seed"),
            source=d.get("source", {}),
            stats=d.get("stats", {}),
            tool_version=d.get("tool_version", ""),
            created=d.get("created", ""),
            format_version=version,
        )
        return dataclasses.replace(meta, dataset_id=d.get("dataset_id") or content_id(meta))


def content_id(meta: Metadata) -> str:
    """A short hash of what a dataset holds: spec, splits, shard counts and shard checksums.

    Two datasets with equal ids hold the same records in the same shards. Datasets written before shard
    checksums existed have none, so their id also hashes the creation time: a reconversion changes it.
    """
    d = meta.to_dict()
    content = {k: d[k] for k in ("features", "label", "splits", "compression", "seed", "format_version")}
    if any(s.crc32c is None for split in meta.splits.values() for s in split.shards):
        content["created"] = meta.created
    blob = json.dumps(content, sort_keys=True, default=_json_default).encode()
    return hashlib.sha256(blob).hexdigest()[:16]


def _json_default(obj: Any) -> Any:
    if isinstance(obj, np.generic):
        return obj.item()
    if isinstance(obj, np.ndarray):
        return obj.tolist()
    raise TypeError(f"{type(obj).__name__} is not JSON serialisable")


def is_remote(path: str) -> bool:
    """A URL read through a filesystem library (gs://, s3://, hdfs://), not a local path; ``file://`` is local."""
    return "://" in path and not path.startswith("file://")


def write_text(path: str, text: str) -> None:
    """Write a local text file atomically: a reader sees the old content or the new, never part of it."""
    tmp = path + ".tmp"
    with open(tmp, "w", encoding="utf-8", newline="") as f:
        f.write(text)
    os.replace(tmp, path)


def write_json(path: str, obj: Any) -> None:
    """``obj`` as indented, key-sorted JSON (numpy values as numbers, anything else as text), atomically."""
    write_text(path, json.dumps(obj, indent=2, sort_keys=True, default=lambda o: o.item() if hasattr(o, "item") else str(o)) + "\n")


def read_metadata(dataset_dir: str) -> Metadata:
    """Load ``dataset_dir/metadata.json``; a directory without one is not a (complete) dataset."""
    dataset_dir = dataset_dir.removeprefix("file://")
    path = os.path.join(dataset_dir, METADATA_FILE)
    if is_remote(dataset_dir):  # a URL TensorFlow reads (gs://, hdfs://): a prefix is a dataset iff metadata.json is
        import tensorflow as tf

        if not tf.io.gfile.exists(path):
            raise DatasetError(f"{path}: missing; {dataset_dir} is not a complete shardkit dataset")
        return _parse_metadata(path, tf.io.gfile.GFile(path, "r").read())
    if not os.path.isdir(dataset_dir):
        raise DatasetError(f"{dataset_dir}: no such dataset directory")
    if not os.path.exists(path):
        raise DatasetError(f"{path}: missing; {dataset_dir} is not a complete shardkit dataset")
    with open(path, encoding="utf-8") as f:
        return _parse_metadata(path, f.read())


def _parse_metadata(path: str, text: str) -> Metadata:
    try:
        return Metadata.from_dict(json.loads(text))
    except (json.JSONDecodeError, KeyError, TypeError, ValueError) as e:
        raise DatasetError(f"{path}: invalid metadata: {e}") from e


def write_metadata(metadata: Metadata, dataset_dir: str) -> str:
    """Write metadata.json into ``dataset_dir`` (the last file a converter writes) and return its path."""
    path = os.path.join(dataset_dir, METADATA_FILE)
    write_text(path, metadata.to_json() + "\n")
    return path


def example_bytes(payload: Mapping[str, bytes], ints: Mapping[str, int]) -> bytes:
    """Serialise one example: ``payload`` bytes features and int64 ``ints`` (label, row_id, lengths)."""
    import tensorflow as tf

    feats = {k: tf.train.Feature(bytes_list=tf.train.BytesList(value=[v])) for k, v in payload.items()}
    feats.update({k: tf.train.Feature(int64_list=tf.train.Int64List(value=[int(v)])) for k, v in ints.items()})
    return tf.train.Example(features=tf.train.Features(feature=feats)).SerializeToString(deterministic=True)


def parse_spec(features: tuple[Feature, ...]) -> dict[str, Any]:
    """The ``tf.io.parse_example`` feature description for records of this dataset."""
    import tensorflow as tf

    spec: dict[str, Any] = {
        LABEL_KEY: tf.io.FixedLenFeature([], tf.int64),
        ROW_ID_KEY: tf.io.FixedLenFeature([], tf.int64),
    }
    for f in features:
        spec[f.name] = tf.io.FixedLenFeature([], tf.string)
        if f.kind == "sequence":
            spec[f.name + LENGTH_SUFFIX] = tf.io.FixedLenFeature([], tf.int64)
    return spec


def shard_name(split: str, index: int, num_shards: int, compression: str | None) -> str:
    """Relative path of one shard: ``<split>/<split>-00000-of-00004.tfrecord[.gz]``."""
    suffix = ".tfrecord.gz" if compression == "GZIP" else ".tfrecord"
    return f"{split}/{split}-{index:05d}-of-{num_shards:05d}{suffix}"
