"""pyproject.toml tells the truth: every package the tests import is declared, and the installed Keras is
inside the pinned range."""

from __future__ import annotations

import ast
import importlib.metadata
import sys
from pathlib import Path

from packaging.requirements import Requirement
from packaging.utils import canonicalize_name
from packaging.version import Version

if sys.version_info >= (3, 11):
    import tomllib
else:  # the test extra installs tomli on 3.10
    import tomli as tomllib

ROOT = Path(__file__).resolve().parents[1]
LOCAL = {"bench", "conftest", "datasets", "shardkit"} | {p.stem for p in (ROOT / "tests").glob("*.py")}
# module -> the declared distributions that provide it (distributed: apache-beam[dask]; google.cloud.storage and
# google.auth: apache-beam[gcp])
PROVIDED_BY = {"tensorflow": {"tensorflow", "tensorflow-cpu"}, "tomli": {"tomli"}, "distributed": {"apache-beam"},
               "google": {"apache-beam"}}


def declared() -> dict[str, list[Requirement]]:
    """Every distribution pyproject.toml names (dependencies and all extras), by canonical name."""
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    lines = [*project["dependencies"], *(r for rs in project["optional-dependencies"].values() for r in rs)]
    out: dict[str, list[Requirement]] = {}
    for line in lines:
        req = Requirement(line)
        out.setdefault(canonicalize_name(req.name), []).append(req)
    return out


def imported_modules(folder: Path) -> set[str]:
    """Top-level modules imported anywhere in ``folder``'s .py files, standard library and local ones left out."""
    names: set[str] = set()
    for path in folder.glob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                names |= {a.name.split(".")[0] for a in node.names}
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                names.add(node.module.split(".")[0])
    return names - set(sys.stdlib_module_names) - LOCAL


def test_every_package_the_tests_import_is_declared() -> None:
    dists = importlib.metadata.packages_distributions()
    names = set(declared())
    undeclared = []
    for module in sorted(imported_modules(ROOT / "tests")):
        candidates = PROVIDED_BY.get(module) or set(dists.get(module, [module]))
        if not {canonicalize_name(c) for c in candidates} & names:
            undeclared.append(module)
    assert not undeclared, f"tests import {undeclared}, which pyproject.toml does not declare"


def test_installed_keras_is_inside_the_pinned_range() -> None:
    keras = Version(importlib.metadata.version("keras"))
    pins = declared()["keras"]
    assert {str(r.specifier) for r in pins} == {str(pins[0].specifier)}, "the cpu and gpu extras pin keras alike"
    assert keras in pins[0].specifier, f"installed keras {keras} is outside pyproject's {pins[0].specifier}"
