"""Beam glue: pipeline options and runner choice, the local-path check, and the job itself.

The job is Create(shard refs) | Reshuffle | ParDo(write one shard): only a shard's identity moves through
Beam (its rows are in a plan file the worker reads), so the job graph is O(shards) and the FnApiRunner's
in-memory GroupByKey never holds payloads.
"""

from __future__ import annotations

import os
import re
from typing import Any, Iterator

from . import plan as planning
from .encoders import InputError
from .shards import EncodeConfig, write_shard
from .sources import Source

LOCAL_RUNNERS = {"fnapirunner", "directrunner", "daskrunner", "swallowingdirectrunner"}


def _write_fn(enc: EncodeConfig) -> Any:
    import apache_beam as beam

    class WriteShardFn(beam.DoFn):
        """Writes one shard per task; keeps its sources open for the worker's lifetime."""

        def __init__(self, enc: EncodeConfig) -> None:
            self.enc = enc
            self.sources: dict[int, Source] = {}

        def process(self, ref: planning.ShardRef) -> Iterator[dict[str, Any]]:
            yield write_shard(ref, self.enc, self.sources)

        def teardown(self) -> None:
            for s in self.sources.values():
                s.close()

    return WriteShardFn(enc)


def pipeline_options(beam_args: list[str], workers: int, worker_mode: str = "process") -> tuple[Any, Any, str]:
    """PipelineOptions from the Beam args; the local FnApiRunner over ``workers`` worker processes (or
    threads, ``worker_mode="thread"``) unless ``--runner`` names another. Returns (options, runner or None,
    runner name)."""
    from apache_beam.options.pipeline_options import PipelineOptions, StandardOptions

    if not any(a.startswith("--default_sdk_harness_log_level") for a in beam_args):
        beam_args = list(beam_args) + ["--default_sdk_harness_log_level=CRITICAL"]
    opts = PipelineOptions(list(beam_args))
    runner = opts.view_as(StandardOptions).runner
    if runner:
        return opts, None, str(runner)
    from apache_beam.runners.portability.fn_api_runner import FnApiRunner

    workers = workers or os.cpu_count() or 1
    mode = ("multi_threading" if worker_mode == "thread" else "multi_processing") if workers > 1 else "in_memory"
    opts = PipelineOptions(list(beam_args) + [f"--direct_num_workers={workers}", f"--direct_running_mode={mode}"])
    return opts, FnApiRunner(), f"FnApiRunner ({mode}, {workers} workers)"


def check_runner_paths(runner_name: str, beam_args: list[str], paths: list[str]) -> None:
    """A local path cannot be read or written by a remote runner's workers: fail now instead of hanging."""
    short = runner_name.split(".")[-1].split(" ")[0].lower()
    if short in LOCAL_RUNNERS:
        return
    env = next((a.split("=", 1)[1] for a in beam_args if a.startswith("--environment_type=")), "").upper()
    if env in ("LOOPBACK", "PROCESS") and short in ("portablerunner", "flinkrunner", "sparkrunner", "prismrunner"):
        return
    local = [p for p in paths if "://" not in p or p.startswith("file://")]
    if local:
        raise InputError(
            f"{local[0]}: is a local path, but runner {runner_name} runs workers elsewhere that cannot see it; "
            "put inputs and --out on shared storage (e.g. gs://...) or run locally"
        )


def build_job(p: Any, refs: list[planning.ShardRef], enc: EncodeConfig) -> None:
    """Add the conversion to pipeline ``p``: one small element per shard, spread over workers, each written."""
    import apache_beam as beam

    (
        p
        | "Shards" >> beam.Create(refs, reshuffle=False)
        | "Spread" >> beam.Reshuffle()
        | "Write" >> beam.ParDo(_write_fn(enc))
    )


def run_job(refs: list[planning.ShardRef], enc: EncodeConfig, opts: Any, runner: Any) -> None:
    import apache_beam as beam

    p = beam.Pipeline(runner=runner, options=opts)
    build_job(p, refs, enc)
    result = p.run()
    try:
        result.wait_until_finish()
    finally:
        client = getattr(result, "client", None)  # the Dask runner leaves its distributed.Client open
        if client is not None:
            client.close()


def error_from(exc: BaseException) -> str | None:
    """The shardkit error message inside a (remote) Beam failure, if there is one."""
    text = str(exc)
    found = re.findall(r"(?:InputError|ConvertError): ([^\n]+)", text)
    return found[-1].strip() if found else None
