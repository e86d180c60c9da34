"""Beam glue: pipeline options and runner choice, the local-path check, and the job itself.

The job is Create(shard refs) | Reshuffle | ParDo(write one shard): only a shard's identity moves through
Beam (its rows are in a plan file the worker reads), so the job graph is O(shards) and the FnApiRunner's
in-memory GroupByKey never holds payloads.
"""

from __future__ import annotations

import os
import re
from typing import Any, Iterator

from shardkit.spec import is_remote

from . import plan as planning
from .errors import InputError
from .shards import EncodeConfig, write_shard
from .sources import Source

BEAM_WORKER = b"-m apache_beam.runners.worker.sdk_worker_main"  # the FnApiRunner's multi_processing command
WORKER_MODES = ("process", "thread")  # local workers as processes or threads
_RUNNING_MODES = {"process": "multi_processing", "thread": "multi_threading"}  # Beam's name for each
LOCAL_RUNNERS = {"fnapirunner", "directrunner", "daskrunner", "swallowingdirectrunner"}


def filesystem_options(opts: Any) -> Any:
    """Give Beam's FileSystems this job's options (e.g. --s3_endpoint_url) for every later call in this
    process; returns the options it had before, for ``restore_filesystem_options``."""
    from apache_beam.io.filesystems import FileSystems

    previous = FileSystems._pipeline_options  # noqa: SLF001 - Beam has no getter
    FileSystems.set_options(opts)
    return previous


def restore_filesystem_options(previous: Any) -> None:
    from apache_beam.io.filesystems import FileSystems

    FileSystems.set_options(previous)


def _write_fn(enc: EncodeConfig, options: dict[str, Any]) -> Any:
    import apache_beam as beam

    class WriteShardFn(beam.DoFn):
        """Writes one shard per task; keeps its sources open for the worker's lifetime. Its FileSystems
        get the job's options first: a worker process starts without them."""

        def __init__(self, enc: EncodeConfig, options: dict[str, Any]) -> None:
            self.enc = enc
            self.options = options
            self.sources: dict[int, Source] = {}

        def setup(self) -> None:
            from apache_beam.options.pipeline_options import PipelineOptions

            filesystem_options(PipelineOptions.from_dictionary(self.options))

        def process(self, ref: planning.ShardRef) -> Iterator[dict[str, Any]]:
            yield write_shard(ref, self.enc, self.sources)

        def teardown(self) -> None:
            for s in self.sources.values():
                s.close()

    return WriteShardFn(enc, options)


def _stop_workers_that_have_not_connected() -> None:
    """Make Beam's ``ControlConnection.close`` queue a worker's stop marker even before that worker has
    connected. Beam queues it only for a connected worker, so a job stopped while its worker processes were
    still starting (Ctrl-C or SIGTERM in the first seconds) left each of them waiting for instructions, and the
    runner waiting for them, forever. A worker that connects after the close now gets the marker and exits."""
    from apache_beam.runners.portability.fn_api_runner import worker_handlers as handlers

    conn = handlers.ControlConnection
    if getattr(conn.close, "_shardkit", False):
        return
    beam_close = conn.close

    def close(self: Any) -> None:
        with conn._lock:  # noqa: SLF001 - the state Beam's close reads, under its lock
            if self._state == handlers.BeamFnControlServicer.UNSTARTED_STATE:  # noqa: SLF001
                self._push_queue.put(handlers.BeamFnControlServicer._DONE_MARKER)  # noqa: SLF001
        beam_close(self)

    close._shardkit = True  # type: ignore[attr-defined]
    conn.close = close


def _local_runner(log_level: str) -> Any:
    """Beam's FnApiRunner whose worker processes start through ``shardkit.convert.worker`` (quiet at
    ``log_level``, and they exit with this process) instead of Beam's bare SDK worker."""
    from apache_beam.portability import python_urns
    from apache_beam.runners.portability.fn_api_runner import FnApiRunner

    from .worker import command

    _stop_workers_that_have_not_connected()

    class LocalRunner(FnApiRunner):
        """Swaps the worker command in the pipeline's environments just before the run."""

        def run_via_runner_api(self, pipeline_proto: Any, options: Any) -> Any:
            ours = command(os.getpid(), log_level).encode()
            for env in pipeline_proto.components.environments.values():
                if env.urn == python_urns.SUBPROCESS_SDK and env.payload.endswith(BEAM_WORKER):
                    env.payload = ours
            return super().run_via_runner_api(pipeline_proto, options)

    return LocalRunner()


def pipeline_options(beam_args: list[str], workers: int, worker_mode: str = WORKER_MODES[0],
                     log_level: str = "CRITICAL") -> tuple[Any, Any, str]:
    """PipelineOptions from the Beam args; the local FnApiRunner over ``workers`` worker processes (or
    threads, ``worker_mode="thread"``) unless ``--runner`` names another. Workers log at ``log_level``.
    Returns (options, runner or None, runner name)."""
    from apache_beam.options.pipeline_options import PipelineOptions, StandardOptions

    if not any(a.startswith("--default_sdk_harness_log_level") for a in beam_args):
        beam_args = list(beam_args) + [f"--default_sdk_harness_log_level={log_level}"]
    opts = PipelineOptions(list(beam_args))
    runner = opts.view_as(StandardOptions).runner
    if runner:
        return opts, None, str(runner)
    workers = workers or os.cpu_count() or 1
    mode = _RUNNING_MODES[worker_mode] if workers > 1 else "in_memory"
    opts = PipelineOptions(list(beam_args) + [f"--direct_num_workers={workers}", f"--direct_running_mode={mode}"])
    return opts, _local_runner(log_level), f"FnApiRunner ({mode}, {workers} workers)"


def _runner_class(name: str) -> Any:
    """The runner class ``--runner=name`` means, resolved as Beam does; InputError if there is none."""
    import importlib

    from apache_beam.options.pipeline_options import StandardOptions

    known = {p.rsplit(".", 1)[-1].lower(): p for p in StandardOptions.ALL_KNOWN_RUNNERS}
    path = known.get(name.lower(), known.get(name.lower() + "runner", name))
    module, _, cls = path.rpartition(".")
    if not module:
        raise InputError(f"--runner={name}: unknown runner; known runners: "
                         f"{', '.join(StandardOptions.KNOWN_RUNNER_NAMES)}, or a runner class's full path such as "
                         "apache_beam.runners.dask.dask_runner.DaskRunner")
    try:
        return getattr(importlib.import_module(module), cls)
    except ImportError as e:
        raise InputError(f"--runner={name}: runner {path} cannot be imported here ({e})") from None
    except AttributeError:
        raise InputError(f"--runner={name}: module {module} has no runner {cls}") from None


def check_beam_args(beam_args: list[str]) -> None:
    """Refuse a misspelled runner, and options or words after ``--`` that no Beam options class defines
    (Beam itself would silently drop them); the runner's module is imported first so its options count."""
    import difflib

    from apache_beam.options.pipeline_options import PipelineOptions, StandardOptions

    runner = PipelineOptions(list(beam_args)).view_as(StandardOptions).runner
    if runner and not isinstance(runner, str):
        runner = None
    if runner:
        _runner_class(runner)
    found: dict[str, Any] = {}

    def collect(parser: Any) -> None:
        found["unknown"] = parser.parse_known_args(list(beam_args))[1]
        found["known"] = [o for a in parser._actions for o in a.option_strings]  # noqa: SLF001

    PipelineOptions(list(beam_args)).get_all_options(add_extra_args_fn=collect, retain_unknown_options=True)
    unknown, known = found["unknown"], found["known"]
    problems = []
    for i, item in enumerate(unknown):
        if item.startswith("-"):
            name = item.split("=", 1)[0]
            close = difflib.get_close_matches(name, known, n=1)
            problems.append(f"unknown option {name}" + (f" (did you mean {close[0]}?)" if close else ""))
        elif not (i and unknown[i - 1].startswith("--") and "=" not in unknown[i - 1]):
            problems.append(f"stray word {item!r}")
    if problems:
        raise InputError(f"after --: {'; '.join(problems)}; Beam would silently ignore "
                         f"{'them' if len(problems) > 1 else 'it'}: fix the spelling or remove "
                         f"{'them' if len(problems) > 1 else 'it'}")


def check_runner_paths(runner_name: str, beam_args: list[str], paths: list[str]) -> None:
    """A local path cannot be read or written by a remote runner's workers: fail now instead of hanging."""
    short = runner_name.split(".")[-1].split(" ")[0].lower()
    if short in LOCAL_RUNNERS:
        return
    env = next((a.split("=", 1)[1] for a in beam_args if a.startswith("--environment_type=")), "").upper()
    if env in ("LOOPBACK", "PROCESS") and short in ("portablerunner", "flinkrunner", "sparkrunner", "prismrunner"):
        return
    local = [p for p in paths if not is_remote(p)]
    if local:
        raise InputError(
            f"{local[0]}: is a local path, but runner {runner_name} runs workers elsewhere that cannot see it; "
            "put inputs and --out on shared storage (e.g. gs://...) or run locally"
        )


def build_job(p: Any, refs: list[planning.ShardRef], enc: EncodeConfig) -> None:
    """Add the conversion to pipeline ``p``: one small element per shard, spread over workers, each written."""
    import apache_beam as beam

    options = p.options.get_all_options(drop_default=True) if p.options is not None else {}
    (
        p
        | "Shards" >> beam.Create(refs, reshuffle=False)
        | "Spread" >> beam.Reshuffle()
        | "Write" >> beam.ParDo(_write_fn(enc, options))
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
