"""Which target the class-only parts of the trainer use (balanced sampling, the confusion matrix that
``--repeat`` and ``compare`` read, per-class recall), and their one-line refusal where a dataset has none.

Free of TensorFlow: the command line's modules import it before TensorFlow's logging is set up.
"""

from __future__ import annotations

from shardkit import spec
from shardkit.spec import Metadata, Target


def class_targets(metadata: Metadata) -> tuple[Target, ...]:
    """The dataset's class targets, in metadata order."""
    return tuple(t for t in metadata.targets if t.kind == "class")


def primary_class(metadata: Metadata) -> Target | None:
    """The class target repeat/compare and the single confusion matrix use: the stratify target, else the
    first class target, else None (a dataset of regression and multi-label targets only)."""
    if metadata.stratify is not None:
        return metadata.target(metadata.stratify)
    found = class_targets(metadata)
    return found[0] if found else None


def require_class(metadata: Metadata, option: str, dataset: str = "", counted: bool = False) -> Target:
    """The primary class target (with ``counted``, the stratify target, whose class counts the splits hold),
    or ``DatasetError`` naming ``option`` when the dataset has none."""
    if counted:
        target = metadata.target(metadata.stratify) if metadata.stratify else None
    else:
        target = primary_class(metadata)
    if target is None:
        where = f"{dataset}: " if dataset else ""
        kinds = ", ".join(f"{t.name} ({t.kind})" for t in metadata.targets)
        what = "a class target the splits were stratified by" if counted and class_targets(metadata) else "a class target"
        raise spec.DatasetError(f"{where}{option} needs {what}, and this dataset has none (targets: {kinds}); "
                                f"run without {option}")
    return target
