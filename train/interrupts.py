"""Ctrl-C during ``shardkit-train fit``: SIGINT is held, then acted on at the next step boundary.

Python raises KeyboardInterrupt at whatever bytecode runs when the signal arrives. Inside TensorFlow's
tracing (tf.data functions, Keras' train step) that can leave its context managers half entered, so the
interrupt turns into an unrelated traceback ("Concurrent access?") or is swallowed. Held, it is raised
only where nothing of TensorFlow's is under way: at a ``check()`` (``AtStepStart`` before each training,
validation and test step, and between phases).
"""

from __future__ import annotations

import contextlib
import signal
import threading
from typing import Any, Iterator

import keras

_HELD: list[int] = []  # SIGINTs received inside ``held()`` and not yet acted on


def _hold(signum: int, frame: Any) -> None:
    _HELD.append(signum)


def check() -> None:
    """Raise KeyboardInterrupt if a Ctrl-C is being held (a no-op outside ``held()``)."""
    if _HELD:
        _HELD.clear()
        raise KeyboardInterrupt


@contextlib.contextmanager
def held() -> Iterator[None]:
    """Hold SIGINT for the block and raise a held Ctrl-C at the next ``check()``; once one is raised, further
    presses are ignored while the command winds up, so the user sees one line. A press after the block's last
    check (its work done, only reports left to write) changes nothing."""
    if threading.current_thread() is not threading.main_thread():  # handlers can only be set there
        yield
        return
    previous, interrupted = signal.signal(signal.SIGINT, _hold), False
    try:
        yield
    except KeyboardInterrupt:
        interrupted = True
        raise
    finally:
        _HELD.clear()
        signal.signal(signal.SIGINT, signal.SIG_IGN if interrupted else previous)


class AtStepStart(keras.callbacks.Callback):
    """Acts on a held Ctrl-C before each training, validation or evaluation step (after the previous step's
    callbacks, backups included, have run)."""

    def on_train_batch_begin(self, batch: int, logs: dict | None = None) -> None:
        check()

    on_test_batch_begin = on_train_batch_begin
