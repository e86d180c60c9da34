"""``--steps-per-execution``: how many train steps one call to the device runs.

Each call costs a fixed hand-over between Python and the device. On an accelerator a small model's step can be
shorter than that hand-over, and running several steps per call amortizes it; on CPU it does not pay, so
``auto`` is 1 there and, on accelerators, enough steps for one call to last ``TARGET_SECONDS``.
"""

from __future__ import annotations

import math
import random
import statistics
import time
from typing import Any, Callable

import numpy as np

TARGET_SECONDS = 0.05  # the least time ``auto`` aims one call to take on an accelerator


def resolve(value: int | str, backend: str, accelerated: bool, step_seconds: Callable[[], float], steps_per_epoch: int) -> int:
    """The steps per call for ``--steps-per-execution value``: the number given, or for ``auto`` 1 on CPU (and on
    torch, whose Keras trainer runs one step per call), else ``TARGET_SECONDS`` over the measured step time."""
    if value != "auto":
        if backend == "torch" and int(value) > 1:
            raise ValueError(f"--steps-per-execution {value}: Keras on the torch backend runs one train step per call; "
                             "use 1 or auto, or --backend jax/tensorflow")
        return int(value)
    if backend == "torch" or not accelerated:
        return 1
    return max(1, min(steps_per_epoch, math.ceil(TARGET_SECONDS / max(step_seconds(), 1e-6))))


def measure_step(build: Callable[[], Any], batch: tuple[Any, Any], warmup: int = 3, calls: int = 10) -> float:
    """Median seconds of one ``train_on_batch`` call on a fresh model from ``build`` (compiled, one step per
    call), waiting for each result. The run's own model and Python/numpy random streams are left untouched."""
    saved = random.getstate(), np.random.get_state()
    try:
        model = build()
        times = []
        for i in range(warmup + calls):
            start = time.perf_counter()
            logs = model.train_on_batch(*batch, return_dict=True)
            _ = [float(v) for v in logs.values()]  # reading the result back waits for the device
            if i >= warmup:
                times.append(time.perf_counter() - start)
        return statistics.median(times)
    finally:
        random.setstate(saved[0])
        np.random.set_state(saved[1])
