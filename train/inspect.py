"""``shardkit-train inspect``: what a dataset holds, from its metadata plus a few decoded records.

Splits, shard count and sizes, every feature and target, class counts per split and per shard (of the
target the splits were stratified by), and the first examples decoded (an image grid PNG for image
datasets, letters for sequences, category values by name).
Depends on shardkit.spec, TensorFlow and matplotlib only.
"""

from __future__ import annotations

import argparse
import json
import os
from typing import Any

import numpy as np

from shardkit import spec
from shardkit.train.arguments import dataset_command, non_negative_int
from shardkit.train.verify import ordered_splits

SUMMARY_FILE = "inspect.json"
EXAMPLES_PNG = "examples.png"
SHOWN_LETTERS = 60


def inspect_dataset(dataset_dir: str, out_dir: str | None = None, num_examples: int = 16) -> dict[str, Any]:
    """Summarise ``dataset_dir``; with ``out_dir``, also write inspect.json and (images) examples.png there."""
    meta = spec.read_metadata(dataset_dir)
    names = list(meta.label.titles) if meta.stratify else []
    splits = {name: split_summary(dataset_dir, meta.splits[name]) for name in ordered_splits(meta)}
    summary: dict[str, Any] = {
        "dataset": os.path.abspath(dataset_dir),
        "format_version": meta.format_version,
        "tool_version": meta.tool_version,
        "created": meta.created,
        "seed": meta.seed,
        "compression": meta.compression,
        "features": [dict(f.__dict__, shape=list(f.shape)) for f in meta.features],
        "targets": [dict(t.__dict__, shape=list(t.shape), titles=list(t.titles)) for t in meta.targets],
        "stratify": meta.stratify,
        "count": sum(s["count"] for s in splits.values()),
        "num_shards": sum(s["num_shards"] for s in splits.values()),
        "bytes": sum(s["bytes"] for s in splits.values()),
        "splits": splits,
        "source": dict(meta.source),
        "stats": dict(meta.stats),
    }
    split = next((s for s in spec.SPLITS if meta.splits.get(s) and meta.splits[s].count), None)
    decoded = first_examples(dataset_dir, meta, split, num_examples) if split else []
    if meta.stratify:
        summary["label"] = {"name": meta.stratify, "num_classes": meta.label.num_classes, "names": names}
    summary["examples"] = [describe_example(e, meta) for e in decoded]
    summary["examples_split"] = split
    if out_dir:
        os.makedirs(out_dir, exist_ok=True)
        image = next((f for f in meta.features if f.kind == "image"), None)
        if image and decoded:
            shown = [{**row, "label": row[meta.stratify]} if meta.stratify else row for row in decoded]
            summary["examples_png"] = write_image_grid(shown, image, names, os.path.join(out_dir, EXAMPLES_PNG))
        with open(os.path.join(out_dir, SUMMARY_FILE), "w", encoding="utf-8") as f:
            json.dump(summary, f, indent=2, default=str)
            f.write("\n")
    return summary


def split_summary(dataset_dir: str, info: spec.SplitInfo) -> dict[str, Any]:
    """Counts and sizes of one split and each of its shards (sizes as found on disk; None if missing)."""
    shards = []
    for s in info.shards:
        path = os.path.join(dataset_dir, s.path)
        shards.append(
            {
                "path": s.path,
                "count": s.count,
                "class_counts": list(s.class_counts),
                "bytes": os.path.getsize(path) if os.path.exists(path) else None,
            }
        )
    return {
        "count": info.count,
        "class_counts": list(info.class_counts),
        "num_shards": len(shards),
        "bytes": sum(s["bytes"] or 0 for s in shards),
        "shards": shards,
    }


def first_examples(dataset_dir: str, meta: spec.Metadata, split: str, n: int) -> list[dict[str, Any]]:
    """The first ``n`` records of a split in shard order, parsed and with payloads decoded to arrays."""
    import tensorflow as tf

    files = meta.shard_paths(dataset_dir, split)
    ds = tf.data.TFRecordDataset(files, compression_type=meta.compression or "").take(n)
    parse = spec.parse_spec(meta.features, meta.targets)
    out = []
    for record in ds:
        row = {k: v.numpy() for k, v in tf.io.parse_single_example(record, parse).items()}
        for f in meta.features:
            if f.stored_as_bytes:
                row[f.name] = decode_feature(row[f.name], f)
        out.append(row)
    return out


def decode_feature(data: bytes, feature: spec.Feature) -> np.ndarray:
    """One feature's stored bytes back to the array the converter encoded (uint8 codes for sequences)."""
    if feature.encoding == "png":
        import tensorflow as tf

        return tf.io.decode_png(data, channels=feature.shape[-1] if len(feature.shape) == 3 else 0).numpy()
    return np.frombuffer(data, np.dtype(feature.dtype)).reshape(feature.shape)


def letters(codes: np.ndarray, length: int, vocabulary: str) -> str:
    """Amino-acid codes back to letters (code 0, padding or an unknown letter, shows as '?')."""
    table = np.array(["?", *vocabulary])
    return "".join(table[codes[: max(0, min(length, len(codes)))]])


def describe_example(row: dict[str, Any], meta: spec.Metadata) -> dict[str, Any]:
    """A JSON-friendly description of one decoded example: row id, the stratify target's class as ``label``
    and ``label_name``, then every target and feature."""
    out: dict[str, Any] = {"row_id": int(row[spec.ROW_ID_KEY])}
    if meta.stratify:
        label = int(row[meta.stratify])
        out.update(label=label, label_name=meta.label.titles[label] if 0 <= label < len(meta.label.titles) else None)
    for t in meta.targets:
        if t.name == meta.stratify:
            continue  # as label / label_name
        value = np.asarray(row[t.name])
        if t.kind == "class":
            i = int(value)
            out[t.name] = {"class": i, "name": t.titles[i] if 0 <= i < len(t.titles) else None}
        elif t.kind == "multilabel":
            out[t.name] = [name for name, v in zip(t.titles, value.tolist()) if v]
        else:
            out[t.name] = round(float(value), 4) if value.ndim == 0 else [round(float(v), 4) for v in value.reshape(-1)]
    for f in meta.features:
        value = row[f.name]
        if f.kind == "sequence":
            length = int(row[f.name + spec.LENGTH_SUFFIX])
            out[f.name + spec.LENGTH_SUFFIX] = length
            out[f.name] = letters(value, min(length, SHOWN_LETTERS), f.vocabulary or "")
        elif f.kind == "category":
            i = int(value)
            out[f.name] = {"index": i, "value": f.categories[i] if f.categories and 0 <= i < len(f.categories) else None}
        elif f.kind == "scalar":
            out[f.name] = value.item()
        else:
            v = value.astype(np.float64)
            out[f.name] = {
                "shape": list(value.shape),
                "dtype": str(value.dtype),
                "min": round(float(v.min()), 4),
                "max": round(float(v.max()), 4),
                "mean": round(float(v.mean()), 4),
            }
    return out


def write_image_grid(rows: list[dict[str, Any]], feature: spec.Feature, names: list[str], path: str) -> str:
    """Save the decoded images in a grid titled with row id and class name; return the PNG's path."""
    from matplotlib.figure import Figure

    cols = min(4, len(rows))
    nrows = -(-len(rows) // cols)
    fig = Figure(figsize=(2.2 * cols, 2.4 * nrows))
    for i, row in enumerate(rows):
        ax = fig.add_subplot(nrows, cols, i + 1)
        image = np.asarray(row[feature.name])
        if image.dtype != np.uint8:
            lo, hi = float(image.min()), float(image.max())
            image = (image - lo) / (hi - lo or 1.0)
        if image.ndim == 3 and image.shape[-1] == 1:
            image = image[..., 0]
        ax.imshow(image, cmap="gray" if image.ndim == 2 else None)
        label = int(row.get("label", -1))
        name = names[label] if 0 <= label < len(names) else ""
        ax.set_title(f"#{int(row[spec.ROW_ID_KEY])} {name}".strip(), fontsize=8)
        ax.axis("off")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    return path


def human_bytes(n: int) -> str:
    """1234567 -> '1.2 MB'."""
    for unit in ("B", "kB", "MB", "GB"):
        if n < 1000 or unit == "GB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1000
    return f"{n:.1f} TB"


def format_summary(summary: dict[str, Any]) -> str:
    """The summary as a short human-readable report."""
    names = summary.get("label", {}).get("names", [])
    lines = [
        f"{summary['dataset']}: {summary['count']} examples, {summary['num_shards']} shards, "
        f"{human_bytes(summary['bytes'])}, compression {summary['compression'] or 'none'}",
        f"features ({len(summary['features'])}):",
    ]
    for f in summary["features"]:
        extra = f", {len(f['categories'])} categories" if f.get("categories") else ""
        lines.append(f"  {f['name']}: {f['kind']} {tuple(f['shape'])} {f['dtype']} {f['encoding']}{extra}")
    lines.append(f"targets ({len(summary['targets'])}):")
    for t in summary["targets"]:
        if t["kind"] == "regression":
            lines.append(f"  {t['name']}: regression, shape {tuple(t['shape'])}")
        else:
            what = "classes" if t["kind"] == "class" else "labels"
            lines.append(f"  {t['name']}: {t['kind']}, {t['num_classes']} {what}: " + ", ".join(t["titles"]))
    lines.append(f"splits stratified by {summary['stratify']}" if summary["stratify"] else "splits drawn at random (no class target to stratify by)")
    for split, s in summary["splits"].items():
        per_class = "; " + ", ".join(f"{n} {c}" for n, c in zip(names, s["class_counts"])) if names else ""
        lines.append(f"{split}: {s['count']} examples in {s['num_shards']} shards, {human_bytes(s['bytes'])}{per_class}")
        for sh in s["shards"]:
            size = "MISSING" if sh["bytes"] is None else human_bytes(sh["bytes"])
            lines.append(f"  {sh['path']}: {sh['count']} examples, {size}" + (f", per class {sh['class_counts']}" if names else ""))
    if summary["examples"]:
        lines.append(f"first examples of {summary['examples_split']}:")
        for e in summary["examples"]:
            rest = {k: v for k, v in e.items() if k not in ("row_id", "label", "label_name")}
            label = f" {summary['stratify']} {e['label']} ({e['label_name']!r})" if "label" in e else ""
            lines.append(f"  row {e['row_id']}{label}: {json.dumps(rest)}")
    if summary.get("examples_png"):
        lines.append(f"image grid: {summary['examples_png']}")
    return "\n".join(lines)


def run(args: argparse.Namespace) -> int:
    """``inspect``: a refused dataset is raised to the command line, which prints it in one line (with its
    traceback under --log)."""
    summary = inspect_dataset(args.dataset, args.out, args.examples)
    print(json.dumps(summary, indent=2, default=str) if args.json else format_summary(summary))
    return 0


def register(subparsers: "argparse._SubParsersAction[argparse.ArgumentParser]") -> argparse.ArgumentParser:
    """Add ``inspect DATASET [--out DIR]`` to a ``shardkit-train`` argument parser."""
    p = dataset_command(subparsers, "inspect", "splits, shards, class counts and a few decoded examples of a dataset",
                        __doc__, run)
    p.add_argument("--out", metavar="DIR", help="write inspect.json and, for images, examples.png here")
    p.add_argument("--examples", type=non_negative_int, default=16, metavar="N",
                   help="decode the first N examples (default 16)")
    p.add_argument("--json", action="store_true", help="print the summary as JSON")
    return p
