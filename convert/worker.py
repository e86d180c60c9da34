"""Entry point of the local converter's worker processes: Beam's SDK worker, quiet, tied to its converter.

The FnApiRunner starts one ``python -m shardkit.convert.worker --converter-pid PID --log-level LEVEL``
per worker instead of Beam's bare ``sdk_worker_main``, so that a worker

* logs to stderr only at LEVEL (Beam's worker otherwise prints its INFO start-up lines to the terminal),
* ignores Ctrl-C (the converter handles it and stops the job), and
* exits when the converter is gone, even after a SIGKILL of the converter (kernel parent-death signal on
  Linux, plus a watchdog thread that notices the converter's pid is no longer its parent).
"""

from __future__ import annotations

import argparse
import logging
import os
import signal
import sys
import threading
import time
import warnings

PR_SET_PDEATHSIG = 1
WATCH_INTERVAL = 0.5


def command(converter_pid: int, log_level: str) -> str:
    """The shell command the FnApiRunner runs for each worker (``exec``: no shell stays between them). SIGINT
    is ignored from the start (``trap``), not only once ``main`` runs: a Ctrl-C while the worker's Python still
    starts would otherwise kill it, and Beam would print a traceback for the lost worker."""
    import shlex

    return (f"trap '' INT; exec {shlex.quote(sys.executable)} -m shardkit.convert.worker "
            f"--converter-pid {converter_pid} --log-level {log_level}")


def _die_with_parent(converter_pid: int) -> None:
    """Exit as soon as ``converter_pid`` stops being this process's parent."""
    try:
        import ctypes

        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
    except (OSError, AttributeError):  # not Linux: the watchdog alone
        pass

    def watch() -> None:
        while os.getppid() == converter_pid:
            time.sleep(WATCH_INTERVAL)
        os._exit(1)

    if os.getppid() != converter_pid:
        os._exit(1)
    threading.Thread(target=watch, name="shardkit-parent-watch", daemon=True).start()


def _quiet_logging(level: str) -> None:
    """Send worker logs to stderr only at ``level``; installed before Beam is imported, so Beam's implicit
    ``logging.basicConfig`` finds a handler and adds none of its own."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setLevel(getattr(logging, level))
    handler.setFormatter(logging.Formatter("shardkit-convert worker %(process)d: %(levelname)s %(name)s: %(message)s"))
    logging.getLogger().addHandler(handler)
    if handler.level > logging.WARNING:
        warnings.simplefilter("ignore")


def main(argv: list[str] | None = None) -> None:
    """Run one Beam SDK worker for the converter whose pid is given."""
    p = argparse.ArgumentParser(prog="python -m shardkit.convert.worker")
    p.add_argument("--converter-pid", type=int, required=True)
    p.add_argument("--log-level", default="CRITICAL", choices=["DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"])
    a = p.parse_args(argv)
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    _die_with_parent(a.converter_pid)
    _quiet_logging(a.log_level)
    from apache_beam.runners.worker import sdk_worker_main

    sdk_worker_main.main(sys.argv)


if __name__ == "__main__":
    main()
