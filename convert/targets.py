"""Targets, read by the driver from the small columns: class ids, multi-hot rows, regression values.

Each reader returns the ``Target`` and one array per input (one value or row per source row) that the plan
carries to the workers; bad values are ``InputError`` naming the file, the column and the row.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import numpy as np

from shardkit.spec import Target

from .columns import Column
from .encoders import stacked, label_spec, merge_label_specs, numbers
from .errors import InputError
from .records import FLOAT, FLOATS, INT, INTS
from .sources import Source

LABEL_BLOCK_ROWS = 1 << 22


def wire_type(t: Target) -> str:
    """How a target's value is stored in a record: one int64 id, int64 0/1 values, float value(s)."""
    if t.kind == "class":
        return INT
    if t.kind == "multilabel":
        return INTS
    return FLOAT if t.shape == () else FLOATS


def read_target(col: Column, sources: list[Source], display: tuple[str, ...] | None = None) -> tuple[Target, list[np.ndarray]]:
    """The target ``col`` of every input; ``display`` names a class target's classes for people."""
    if col.kind == "class":
        return class_target(col, sources, col.option("names") or display)
    if col.kind == "multilabel":
        return multilabel_target(col, sources)
    return regression_target(col, sources)


def id_dtype(num_classes: int) -> type:
    return next(t for t in (np.int8, np.int16, np.int32) if num_classes <= np.iinfo(t).max)


def class_target(col: Column, sources: list[Source], display: tuple[str, ...] | None = None) -> tuple[Target, list[np.ndarray]]:
    """Class ids of every input's rows under one vocabulary, in the narrowest integer type.

    The label columns are read in blocks and each block is mapped on its own, then remapped to the merged
    vocabulary, so memory is about one byte per row (for up to 127 classes) whatever the column's type.
    """
    name = col.column
    blocks: list[list[tuple[int, Target, np.ndarray]]] = []
    for src in sources:
        where = src.where(name)
        mapped = []
        for first, values in src.column_blocks(name, LABEL_BLOCK_ROWS):
            spec, ids = label_spec(values, where, first_row=first)
            mapped.append((first, spec, ids.astype(id_dtype(spec.num_classes))))
        blocks.append(mapped)
    spec = merge_label_specs([b[1] for mapped in blocks for b in mapped], sources[0].where(name))
    index = {n: i for i, n in enumerate(spec.names)}
    out = []
    for src, mapped in zip(sources, blocks):
        ids_s = np.empty(src.num_rows, id_dtype(spec.num_classes))
        for first, bspec, ids in mapped:
            ids_s[first : first + len(ids)] = np.array([index[n] for n in bspec.names], ids_s.dtype)[ids]
        out.append(ids_s)
        mapped.clear()
    if len(sources) > 1:
        train = np.bincount(out[0], minlength=spec.num_classes) > 0
        for src, ids_s in zip(sources[1:], out[1:]):
            extra = np.flatnonzero(~train[ids_s])
            if len(extra):
                i = int(extra[0])
                raise InputError(
                    f"{src.where(name)}, row {i}: label {spec.names[int(ids_s[i])]!r} is out of range: "
                    f"it does not occur in the train input {sources[0].spec.path}"
                )
    _check_classes(spec, out[0], sources[0].where(name))
    if display:
        if len(display) != spec.num_classes:
            setting = "--class-names" if not col.option("names") else f"target {col.name}: names="
            raise InputError(
                f"{setting} gives {len(display)} names but {sources[0].where(name)} has "
                f"{spec.num_classes} classes ({', '.join(spec.names)})"
            )
        spec = dataclasses.replace(spec, display_names=tuple(display))
    return dataclasses.replace(spec, name=col.name), out


def _check_classes(spec: Target, train_ids: np.ndarray, where: str) -> None:
    """A classifier needs two classes: refuse labels that hold one (the train input holds every class)."""
    if spec.num_classes < 2:
        present = [0]
    elif spec.source_kind == "onehot":  # one-hot columns may name classes that no row has
        present = np.flatnonzero(np.bincount(train_ids, minlength=spec.num_classes)).tolist()
    else:
        return
    if len(present) < 2:
        raise InputError(f"{where}: every row has label {spec.names[int(present[0])]!r}; a classifier needs at "
                         "least 2 classes: check --label")


def multilabel_target(col: Column, sources: list[Source]) -> tuple[Target, list[np.ndarray]]:
    """Multi-hot rows (a 2-D 0/1 node or list column, labels named 0..K-1) or lists of label names (a list
    column, or text split at ``sep``, default ';'), as int8 (rows, K) 0/1 arrays."""
    values = [src.column(col.column) for src in sources]
    wheres = [src.where(col.column) for src in sources]
    sep = col.option("sep", ";")
    lists = [v.dtype == object and any(_names_value(x) for x in v.tolist()) for v in values]
    if any(lists):
        rows_labels = [[_label_list(x, sep, i, w) for i, x in enumerate(v.tolist())] for v, w in zip(values, wheres)]
        names = tuple(sorted({n for rl in rows_labels for labels in rl for n in labels}))
        if not names:
            raise InputError(f"{wheres[0]}: no row has any label; check the target's column")
        index = {n: i for i, n in enumerate(names)}
        out = []
        for rl in rows_labels:
            hot = np.zeros((len(rl), len(names)), np.int8)
            for i, labels in enumerate(rl):
                hot[i, [index[n] for n in labels]] = 1
            out.append(hot)
        return Target(len(names), names, "list", name=col.name, kind="multilabel"), out
    out = []
    for v, w in zip(values, wheres):
        x = stacked(v.tolist(), range(len(v)), w) if v.dtype == object else v.astype(np.float64)
        if x.ndim != 2:
            raise InputError(f"{w}: multilabel rows must be multi-hot (one 0/1 value per label), got shape {x.shape}")
        bad = ~np.isin(x, (0.0, 1.0)).all(axis=1)
        if bad.any():
            i = int(np.argmax(bad))
            raise InputError(f"{w}, row {i}: {x[i].tolist()} is not a multi-hot row (0/1 values)")
        out.append(x.astype(np.int8))
    widths = sorted({o.shape[1] for o in out})
    if len(widths) > 1:
        raise InputError(f"{wheres[0]}: multi-hot rows of the inputs have different widths {widths}")
    k = widths[0]
    return Target(k, tuple(str(i) for i in range(k)), "multihot", name=col.name, kind="multilabel"), out


def _names_value(x: Any) -> bool:
    """A row value that lists label names (text, or a list holding text) rather than multi-hot numbers."""
    if isinstance(x, (str, bytes)):
        return True
    return isinstance(x, (list, tuple)) and any(isinstance(v, (str, bytes)) for v in x)


def _label_list(x: Any, sep: str, row: int, where: str) -> list[str]:
    if x is None or (isinstance(x, float) and np.isnan(x)):
        return []
    if isinstance(x, bytes):
        x = x.decode("utf-8", "replace")
    if isinstance(x, str):
        return sorted({p.strip() for p in x.split(sep) if p.strip()})
    if isinstance(x, (list, tuple)):
        return sorted({v.decode("utf-8", "replace") if isinstance(v, bytes) else str(v) for v in x})
    raise InputError(f"{where}, row {row}: {x!r} is neither a list of labels nor text of labels separated by {sep!r}")


def regression_target(col: Column, sources: list[Source]) -> tuple[Target, list[np.ndarray]]:
    """float32 values: one number per row (shape ()), or a vector per row (a 2-D node or list column)."""
    out = []
    for src in sources:
        v, w = src.column(col.column), src.where(col.column)
        rows = range(len(v))
        listed = v.dtype == object and any(isinstance(x, (list, tuple)) for x in v.tolist()[:64])
        if v.ndim == 1 and not listed:
            out.append(numbers(v, rows, w, "float32"))
            continue
        x = stacked(v.tolist(), rows, w) if v.dtype == object else v
        x = x.reshape(len(x), -1)
        with np.errstate(over="ignore", invalid="ignore"):
            y = x.astype(np.float32)
        bad = ~np.isfinite(y).all(axis=1)
        if bad.any():
            raise InputError(f"{w}, row {int(np.argmax(bad))}: value is NaN, inf or out of float32 range")
        out.append(y)
    shapes = sorted({o.shape[1:] for o in out})
    if len(shapes) > 1:
        raise InputError(f"{sources[0].where(col.column)}: inputs have different value shapes {shapes}")
    return Target(name=col.name, kind="regression", shape=shapes[0], source_kind="float"), out
