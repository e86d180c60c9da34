"""Keep TensorFlow's own log lines out of ``shardkit-train``'s output unless ``--log`` asks for them.

TensorFlow's C++ INFO/WARNING lines ("Local rendezvous is aborting", "GeneratorDatasetOp ... will not be
optimized") are stopped by ``TF_CPP_MIN_LOG_LEVEL``, which is read when TensorFlow loads, so ``configure``
runs before the first ``import tensorflow``. The oneDNN banner and absl's pre-initialisation notice are
printed while TensorFlow loads, before that level applies, so that one import's stderr is filtered for
exactly those two lines. Keras re-tracing its step functions for each new model (``--repeat``) is expected
and filtered from the ``tensorflow`` logger; every other warning and error still shows.
"""

from __future__ import annotations

import contextlib
import logging
import os
import sys
import tempfile
from typing import Iterator

TF_LOG_LEVEL = "2"  # C++ errors only
IMPORT_NOISE = ("All log messages before absl::InitializeLog() is called", "oneDNN custom operations are")


def configure(show_logs: bool = False) -> None:
    """Set TensorFlow's log level and import it (quietly unless ``show_logs``); call before anything imports it."""
    if "tensorflow" not in sys.modules:  # the C++ log level is read once, when TensorFlow loads
        if show_logs:
            os.environ["TF_CPP_MIN_LOG_LEVEL"] = "0"
            import tensorflow  # noqa: F401
        else:
            os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", TF_LOG_LEVEL)
            with _stderr_without(IMPORT_NOISE):
                import tensorflow  # noqa: F401
    tf_logger = logging.getLogger("tensorflow")
    for f in [f for f in tf_logger.filters if isinstance(f, KerasStepRetracing)]:
        tf_logger.removeFilter(f)
    if not show_logs:
        tf_logger.addFilter(KerasStepRetracing())


class KerasStepRetracing(logging.Filter):
    """Drops tf.function's "triggered tf.function retracing" warning about Keras' own train/test/predict step
    functions: each new model (every seed of ``--repeat``) traces its own, which TensorFlow counts together."""

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        return not ("triggered tf.function retracing" in message and "TensorFlowTrainer.make_" in message)


@contextlib.contextmanager
def _stderr_without(markers: tuple[str, ...]) -> Iterator[None]:
    """Capture file descriptor 2 (C++ writes there directly) and replay it afterwards minus lines with ``markers``."""
    sys.stderr.flush()
    saved = os.dup(2)
    with tempfile.TemporaryFile() as captured:
        os.dup2(captured.fileno(), 2)
        try:
            yield
        finally:
            sys.stderr.flush()
            os.dup2(saved, 2)
            os.close(saved)
            captured.seek(0)
            for line in captured.read().decode(errors="replace").splitlines(keepends=True):
                if not any(m in line for m in markers):
                    sys.stderr.write(line)
            sys.stderr.flush()
