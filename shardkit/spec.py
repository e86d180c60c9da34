"""The shardkit dataset format: feature spec, example bytes and ``metadata.json``.

This is the one contract between the converter (which writes it) and the trainer (which reads it).
It depends on numpy and TensorFlow only, never on Beam or PyTables, so the training image stays small.

A dataset directory looks like::

    OUT/metadata.json
    OUT/train/train-00000-of-00004.tfrecord[.gz]
    OUT/validation/validation-00000-of-00001.tfrecord[.gz]
    OUT/test/test-00000-of-00001.tfrecord[.gz]

Every record is a ``tf.train.Example`` with one key per feature and per target, plus the int64 ``row_id``
every example carries:

- features: image / sequence / array are one bytes value (raw uint8 / PNG / float bytes, uint8 amino-acid
  codes; a sequence adds an int64 ``<name>_length``); scalar is one int64 or float value; category is one
  int64 index into its ``categories``;
- targets: class is one int64 class id; multilabel is ``num_classes`` int64 0/1 values (multi-hot);
  regression is float values of ``shape``.

Format version 1 (a single feature and a single class target named ``label``) still reads: it is the
version 2 dataset with ``targets = (Target("label", "class", ...),)`` and ``stratify = "label"``.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
from dataclasses import dataclass, field
from typing import Any, Mapping

import numpy as np

FORMAT_VERSION = 2
READABLE_VERSIONS = (1, 2)
METADATA_FILE = "metadata.json"
SPLITS = ("train", "validation", "test")
LABEL_KEY = "label"
ROW_ID_KEY = "row_id"
LENGTH_SUFFIX = "_length"

KINDS = ("image", "sequence", "array", "scalar", "category")
ENCODINGS = {
    "image": ("raw", "png"),
    "sequence": ("codes",),
    "array": ("raw",),
    "scalar": ("int64", "float"),  # stored in the Example's int64_list / float_list (dtype int64 / float32)
    "category": ("index",),  # int64 index into Feature.categories
}
BYTES_KINDS = ("image", "sequence", "array")  # stored as one bytes value
TARGET_KINDS = ("class", "multilabel", "regression")
AMINO_ACIDS = {20: "ACDEFGHIKLMNPQRSTVWY", 25: "ACDEFGHIKLMNPQRSTVWYXBUOZ"}


class DatasetError(Exception):
    """A dataset on disk is missing, partial, or does not match its metadata."""


@dataclass(frozen=True)
class Feature:
    """One payload feature: what it is, its decoded shape and dtype, and how its bytes are encoded.

    ``vocabulary`` (sequences only) lists the letters coded 1..len; code 0 is padding/unknown.
    ``categories`` (category only) lists the source values: index i stands for ``categories[i]``.
    Scalars and categories have shape ``()``; a scalar's dtype is int64 or float32, a category's int64.
    """

    name: str
    kind: str
    shape: tuple[int, ...]
    dtype: str
    encoding: str
    vocabulary: str | None = None
    categories: tuple[str, ...] | None = None

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise ValueError(f"feature {self.name!r}: unknown kind {self.kind!r}, expected one of {KINDS}")
        if self.encoding not in ENCODINGS[self.kind]:
            raise ValueError(f"feature {self.name!r}: encoding {self.encoding!r} is not valid for {self.kind}")
        _check_key(self.name, "feature")
        if self.kind == "category" and not self.categories:
            raise ValueError(f"feature {self.name!r}: a category feature needs its categories")
        object.__setattr__(self, "shape", tuple(int(d) for d in self.shape))
        if self.categories is not None:
            object.__setattr__(self, "categories", tuple(str(c) for c in self.categories))

    @property
    def stored_as_bytes(self) -> bool:
        """True for kinds stored as one bytes value (image, sequence, array)."""
        return self.kind in BYTES_KINDS

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
        categories = d.get("categories")
        return cls(**{**d, "shape": tuple(d["shape"]), "categories": tuple(categories) if categories else None})


def _check_key(name: str, what: str) -> None:
    if not name or name == ROW_ID_KEY or name.endswith(LENGTH_SUFFIX):
        raise ValueError(f"{what} name {name!r} is reserved or empty (row_id and names ending in {LENGTH_SUFFIX} are the format's own)")


@dataclass(frozen=True)
class Target:
    """What a model predicts for each example.

    - class: one int64 id 0..num_classes-1; ``names[i]`` is what class i was in the source (``source_kind``
      "int", "string" or "onehot"), ``display_names`` what people call it (``--class-names``);
    - multilabel: ``num_classes`` int64 0/1 values per example, label i named ``names[i]`` (``source_kind``
      "multihot" or "list");
    - regression: float32 values of ``shape`` (``()`` for a scalar).

    The fields keep the order of format version 1's label spec, so ``Target(num_classes, names, kind)``
    built positionally is a class target named ``label``.
    """

    num_classes: int = 0
    names: tuple[str, ...] = ()
    source_kind: str = "int"
    display_names: tuple[str, ...] | None = None
    name: str = LABEL_KEY
    kind: str = "class"
    shape: tuple[int, ...] = ()

    def __post_init__(self) -> None:
        if self.kind not in TARGET_KINDS:
            raise ValueError(f"target {self.name!r}: unknown kind {self.kind!r}, expected one of {TARGET_KINDS}")
        _check_key(self.name, "target")
        object.__setattr__(self, "names", tuple(str(n) for n in self.names))
        object.__setattr__(self, "shape", tuple(int(d) for d in self.shape))
        if self.display_names is not None:
            object.__setattr__(self, "display_names", tuple(self.display_names))
        if self.kind != "regression" and self.num_classes != len(self.names):
            raise ValueError(f"target {self.name!r}: {self.num_classes} classes but {len(self.names)} names")

    @property
    def titles(self) -> tuple[str, ...]:
        """Class or label names for people: the display names where given, else the source values."""
        return self.display_names or self.names

    @property
    def value_shape(self) -> tuple[int, ...]:
        """Shape of one example's stored value: () for class, (num_classes,) for multilabel, ``shape`` for regression."""
        return {"class": (), "multilabel": (self.num_classes,), "regression": self.shape}[self.kind]

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> "Target":
        display = d.get("display_names")
        return cls(**{**d, "names": tuple(d.get("names", ())), "display_names": tuple(display) if display else None,
                      "shape": tuple(d.get("shape", ()))})


LabelSpec = Target  # the class target of format version 1; new code says Target


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
    targets: tuple[Target, ...]
    splits: Mapping[str, SplitInfo]
    compression: str | None = None  # None or "GZIP"
    seed: int | None = None
    source: Mapping[str, Any] = field(default_factory=dict)
    stats: Mapping[str, Any] = field(default_factory=dict)
    tool_version: str = ""
    created: str = ""
    format_version: int = FORMAT_VERSION
    dataset_id: str = ""  # content_id(): changes whenever a record does; runs record the id they read
    stratify: str | None = LABEL_KEY  # the class target the splits were stratified by, whose class_counts they hold

    def __post_init__(self) -> None:
        names = [f.name for f in self.features] + [t.name for t in self.targets]
        dup = sorted({n for n in names if names.count(n) > 1})
        if dup:
            raise ValueError(f"features and targets share names {dup}; every record key must be unique")
        if self.stratify is not None and self.target(self.stratify).kind != "class":
            raise ValueError(f"stratify target {self.stratify!r} is not a class target")

    def feature(self, name: str) -> Feature:
        for f in self.features:
            if f.name == name:
                return f
        raise KeyError(f"no feature {name!r}; features are {[f.name for f in self.features]}")

    def target(self, name: str) -> Target:
        for t in self.targets:
            if t.name == name:
                return t
        raise KeyError(f"no target {name!r}; targets are {[t.name for t in self.targets]}")

    @property
    def label(self) -> Target:
        """The class target the splits are stratified by (class_counts count its classes)."""
        if self.stratify is None:
            raise DatasetError(f"this dataset has no class target to stratify by; its targets are {[t.name for t in self.targets]}")
        return self.target(self.stratify)

    @property
    def single(self) -> bool:
        """One feature and one target: the reader yields bare tensors (x, y) instead of dicts."""
        return len(self.features) == 1 and len(self.targets) == 1

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
        if version not in READABLE_VERSIONS:
            raise DatasetError(f"unsupported format_version {version!r}; this shardkit reads {READABLE_VERSIONS}")
        if version == 1:
            targets, stratify = (Target.from_dict({**d["label"], "name": LABEL_KEY, "kind": "class"}),), LABEL_KEY
        else:
            targets, stratify = tuple(Target.from_dict(t) for t in d["targets"]), d.get("stratify")
        meta = cls(
            features=tuple(Feature.from_dict(f) for f in d["features"]),
            targets=targets,
            stratify=stratify,
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
    if meta.format_version == 1:  # the keys and values version 1 hashed, so ids recorded by runs still match
        label = {k: d["targets"][0][k] for k in ("num_classes", "names", "source_kind", "display_names")}
        features = [{k: v for k, v in f.items() if k != "categories"} for f in d["features"]]
        content = {"features": features, "label": label}
    else:
        content = {k: d[k] for k in ("features", "targets", "stratify")}
    content.update({k: d[k] for k in ("splits", "compression", "seed", "format_version")})
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
    if os.path.isfile(dataset_dir):
        raise DatasetError(f"{dataset_dir}: is a file; give the dataset directory shardkit-convert wrote "
                           f"(the one holding {METADATA_FILE})")
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


def example_bytes(
    payload: Mapping[str, bytes], ints: Mapping[str, Any], floats: Mapping[str, Any] | None = None
) -> bytes:
    """Serialise one example with TensorFlow (the reference the TF-free writer is tested against): ``payload``
    bytes features, int64 ``ints`` and float32 ``floats``, each value a number or a sequence of numbers."""
    import tensorflow as tf

    def values(v: Any) -> list:
        return [x for x in np.asarray(v).reshape(-1).tolist()]

    feats = {k: tf.train.Feature(bytes_list=tf.train.BytesList(value=[v])) for k, v in payload.items()}
    feats.update({k: tf.train.Feature(int64_list=tf.train.Int64List(value=[int(x) for x in values(v)])) for k, v in ints.items()})
    feats.update({k: tf.train.Feature(float_list=tf.train.FloatList(value=values(v))) for k, v in (floats or {}).items()})
    return tf.train.Example(features=tf.train.Features(feature=feats)).SerializeToString(deterministic=True)


def parse_spec(features: tuple[Feature, ...], targets: tuple[Target, ...] = (Target(),)) -> dict[str, Any]:
    """The ``tf.io.parse_example`` feature description for records of this dataset (every feature, every
    target, ``row_id``). ``targets`` defaults to format version 1's single class target ``label``."""
    import tensorflow as tf

    spec: dict[str, Any] = {ROW_ID_KEY: tf.io.FixedLenFeature([], tf.int64)}
    for f in features:
        if f.stored_as_bytes:
            spec[f.name] = tf.io.FixedLenFeature([], tf.string)
        else:
            spec[f.name] = tf.io.FixedLenFeature([], tf.float32 if f.dtype == "float32" else tf.int64)
        if f.kind == "sequence":
            spec[f.name + LENGTH_SUFFIX] = tf.io.FixedLenFeature([], tf.int64)
    for t in targets:
        spec[t.name] = tf.io.FixedLenFeature(list(t.value_shape), tf.float32 if t.kind == "regression" else tf.int64)
    return spec


def shard_name(split: str, index: int, num_shards: int, compression: str | None) -> str:
    """Relative path of one shard: ``<split>/<split>-00000-of-00004.tfrecord[.gz]``."""
    suffix = ".tfrecord.gz" if compression == "GZIP" else ".tfrecord"
    return f"{split}/{split}-{index:05d}-of-{num_shards:05d}{suffix}"
