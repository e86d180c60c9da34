"""What to convert: the features and targets a user names (``--feature``, ``--target``, ``--spec FILE`` or the
``--kind/--data/--label`` shorthand), checked before any input is opened.

A ``Column`` is one record key: its name, kind, source column/node and typed options. Every mistake is an
``InputError`` whose one line names the setting and the way out (the CLI exits 2 on them).
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from typing import Any, Callable, Mapping

from shardkit.spec import AMINO_ACIDS, ENCODINGS, KINDS, LABEL_KEY, LENGTH_SUFFIX, ROW_ID_KEY, TARGET_KINDS

from .encoders import ARRAY_DTYPES, SCALAR_DTYPES, UNKNOWN_POLICIES
from .errors import InputError

ITEM_FORM = "NAME=KIND:COLUMN[:OPTION=VALUE...]"
SPEC_KEYS = ("features", "targets", "stratify")


def _shape(text: str) -> tuple[int, ...]:
    shape = tuple(int(x) for x in str(text).replace("x", ",").split(",") if x.strip())
    if not shape or min(shape) < 1:
        raise ValueError("expected positive sizes such as 64,64,3")
    return shape


def _image_shape(text: str) -> tuple[int, ...]:
    shape = _shape(text)
    if len(shape) == 2:
        shape += (1,)
    if len(shape) != 3 or shape[2] not in (1, 3, 4):
        raise ValueError("expected H,W or H,W,C with C in 1, 3, 4")
    return shape


def _choice(*allowed: str) -> Callable[[str], str]:
    def parse(text: str) -> str:
        if str(text) not in allowed:
            raise ValueError(f"expected one of {', '.join(allowed)}")
        return str(text)

    return parse


def _positive(text: str) -> int:
    v = int(text)
    if v < 1:
        raise ValueError("must be at least 1")
    return v


def _flag(text: str) -> bool:
    if str(text).lower() not in ("true", "1", "yes"):
        raise ValueError("is a flag: write it alone (e.g. :files)")
    return True


def _names(text: Any) -> tuple[str, ...]:
    items = text if isinstance(text, (list, tuple)) else str(text).split(",")
    return tuple(str(n).strip() for n in items)


OPTIONS: dict[str, dict[str, Callable[[Any], Any]]] = {
    "image": {"shape": _image_shape, "encoding": _choice(*ENCODINGS["image"]), "scale": float, "files": _flag},
    "sequence": {"max_length": _positive, "vocabulary": _choice(*map(str, sorted(AMINO_ACIDS))),
                 "unknown": _choice(*UNKNOWN_POLICIES)},
    "array": {"shape": _shape, "dtype": _choice(*ARRAY_DTYPES), "files": _flag},
    "scalar": {"dtype": _choice(*SCALAR_DTYPES)},
    "category": {},
    "class": {"names": _names},
    "multilabel": {"sep": str},
    "regression": {},
}


@dataclass(frozen=True)
class Column:
    """One feature or target: record key ``name``, ``kind``, the source ``column`` (or HDF5 node) and its
    options as (key, typed value) pairs (plain values: it travels to the Beam workers)."""

    name: str
    kind: str
    column: str
    options: tuple[tuple[str, Any], ...] = ()

    def option(self, key: str, default: Any = None) -> Any:
        return dict(self.options).get(key, default)

    @property
    def files(self) -> bool:
        """The column holds file paths that the workers load."""
        return bool(self.option("files"))


def column(name: str, kind: str, col: str | None, options: Mapping[str, Any], where: str, target: bool) -> Column:
    """A checked Column; ``where`` names the setting in errors (e.g. ``--feature 'x=...'``)."""
    what = "target" if target else "feature"
    kinds = TARGET_KINDS if target else KINDS
    name = str(name).strip()
    if not name or name == ROW_ID_KEY or name.endswith(LENGTH_SUFFIX):
        raise InputError(f"{where}: {what} name {name!r} is empty or reserved (row_id and names ending in "
                         f"{LENGTH_SUFFIX} are the format's own); choose another name")
    if kind not in kinds:
        other = "--feature" if target else "--target"
        hint = f" ({kind} is a {'feature' if target else 'target'} kind: use {other})" if kind in KINDS + TARGET_KINDS else ""
        raise InputError(f"{where}: unknown {what} kind {kind!r}{hint}; {what} kinds are {', '.join(kinds)}")
    allowed = OPTIONS[kind]
    typed = []
    for key, value in options.items():
        if key not in allowed:
            known = ", ".join(allowed) or "none"
            raise InputError(f"{where}: {key!r} is not an option of {kind} {what}s; their options are {known}")
        try:
            v = allowed[key](value)
        except (TypeError, ValueError) as e:
            raise InputError(f"{where}: option {key}={value!r}: {e}") from None
        typed.append((key, v))
    col = name if col is None or col == "" else str(col)
    return Column(name, kind, col, tuple(typed))


def parse_item(text: str, flag: str) -> Column:
    """``NAME=KIND[:COLUMN[:OPTION=VALUE...]]`` as given to ``--feature`` / ``--target`` (COLUMN defaults to NAME;
    a bare option such as ``files`` is a flag)."""
    where = f"{flag} {text!r}"
    name, sep, rest = text.partition("=")
    if not sep or not name.strip() or not rest:
        raise InputError(f"{where}: expected {ITEM_FORM}, e.g. {flag} "
                         f"{'ec=class:ec_lvl_1' if flag == '--target' else 'image=image:path:files'}")
    kind, _, rest = rest.partition(":")
    parts = rest.split(":") if rest else []
    col = parts[0] if parts else None
    options: dict[str, Any] = {}
    for item in parts[1:]:
        key, eq, value = item.partition("=")
        if not key:
            raise InputError(f"{where}: empty option; expected {ITEM_FORM}")
        options[key.strip().replace("-", "_")] = value if eq else "true"
    return column(name, kind.strip(), col, options, where, target=flag == "--target")


def load_spec(path: str) -> tuple[list[Column], list[Column], str | None]:
    """The features, targets and stratify target listed in a YAML or JSON file::

        features:
          - {name: sequence, kind: sequence, column: Sequence, max_length: 660}
        targets:
          - {name: ec_lvl_1, kind: class}          # column defaults to the name
        stratify: ec_lvl_1

    ``features``/``targets`` may also map names to ``{kind, column, options...}``.
    """
    try:
        with open(path, encoding="utf-8") as f:
            text = f.read()
    except OSError as e:
        raise InputError(f"--spec {path}: cannot read: {e.strerror or e}") from None
    if path.lower().endswith(".json"):
        try:
            data = json.loads(text)
        except json.JSONDecodeError as e:
            raise InputError(f"--spec {path}: not valid JSON: {e}") from None
    else:
        try:
            import yaml
        except ImportError:
            raise InputError(f"--spec {path}: reading YAML needs PyYAML (pip install pyyaml), or write the spec as "
                             ".json") from None
        try:
            data = yaml.safe_load(text)
        except yaml.YAMLError as e:
            first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
            raise InputError(f"--spec {path}: not valid YAML: {first}") from None
    if not isinstance(data, dict):
        raise InputError(f"--spec {path}: expected a mapping with keys {', '.join(SPEC_KEYS)}")
    extra = sorted(set(data) - set(SPEC_KEYS))
    if extra:
        raise InputError(f"--spec {path}: unknown key {extra[0]!r}; the keys are {', '.join(SPEC_KEYS)}")
    out: dict[str, list[Column]] = {}
    for key in ("features", "targets"):
        items = data.get(key) or []
        if isinstance(items, dict):
            items = [{"name": n, **(v or {})} for n, v in items.items()]
        if not isinstance(items, list) or not all(isinstance(i, dict) for i in items):
            raise InputError(f"--spec {path}: {key} must be a list of mappings such as {{name: x, kind: scalar, column: x}}")
        out[key] = []
        for i, item in enumerate(items):
            item = dict(item)
            name = item.pop("name", None)
            where = f"--spec {path}: {key}[{i}]" + (f" ({name})" if name else "")
            if name is None or "kind" not in item:
                raise InputError(f"{where}: every entry needs a name and a kind")
            kind, col = str(item.pop("kind")), item.pop("column", None)
            options = {k.replace("-", "_"): (",".join(map(str, v)) if isinstance(v, list) and k != "names" else v)
                       for k, v in item.items()}
            out[key].append(column(name, kind, col, options, where, target=key == "targets"))
    stratify = data.get("stratify")
    return out["features"], out["targets"], None if stratify is None else str(stratify)


def check(features: list[Column], targets: list[Column], stratify: str | None) -> None:
    """Refuse what no input can fix: no feature or target, a name used twice, a stratify target that is not
    a class target."""
    if not features:
        raise InputError("no feature: give --feature NAME=KIND:COLUMN (or --spec FILE, or --kind/--data)")
    if not targets:
        raise InputError("no target: give --target NAME=KIND:COLUMN (or --label COLUMN, or targets in --spec)")
    seen: dict[str, str] = {}
    for what, cols in (("feature", features), ("target", targets)):
        for c in cols:
            if c.name in seen:
                raise InputError(f"{what} name {c.name!r} is used twice (also a {seen[c.name]}); every feature and "
                                 "target needs its own name: rename one")
            seen[c.name] = what
    if stratify is not None:
        kinds = {t.name: t.kind for t in targets}
        if stratify not in kinds:
            raise InputError(f"--stratify {stratify}: no such target; targets are {', '.join(kinds)}")
        if kinds[stratify] != "class":
            raise InputError(f"--stratify {stratify}: is a {kinds[stratify]} target; stratify by a class target, "
                             "or leave --stratify out for a seeded random split")


def shorthand(kind: str, data: str, name: str | None, label: str) -> tuple[list[Column], list[Column]]:
    """``--kind/--data/--label``: one feature named ``name`` (default: the kind) and the class target ``label``.
    Their options come from the global flags (``--image-shape``, ``--max-length`` ...)."""
    return [Column(name or kind, kind, data)], [Column(LABEL_KEY, "class", label)]


def table_folder(path: str, parts: tuple[str, ...]) -> str:
    """The folder relative file paths in a table are resolved against: the table file's folder, or the folder
    an input names when it is a folder of part files."""
    if parts and not any(c in path for c in "*?["):
        return path.rstrip("/")
    if "://" in path and not path.startswith("file://"):
        return path.rsplit("/", 1)[0]
    return os.path.dirname(path.removeprefix("file://"))
