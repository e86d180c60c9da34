"""Which Keras backend trains: ``--backend`` or ``$KERAS_BACKEND`` (else tensorflow), chosen before Keras loads.

Keras reads ``KERAS_BACKEND`` once, when it is first imported (importing TensorFlow imports it), so ``select``
runs before anything imports either. tf.data on CPU TensorFlow reads the shards on every backend.
"""

from __future__ import annotations

import importlib.metadata
import importlib.util
import os
import sys

BACKENDS = ("tensorflow", "jax", "torch")
# the package each backend imports, and the distributions whose version is the backend's version
_PACKAGE = {"tensorflow": ("tensorflow", ("tensorflow", "tensorflow-cpu", "tensorflow-gpu")),
            "jax": ("jax", ("jax",)), "torch": ("torch", ("torch",))}
_INSTALL = {"tensorflow": "pip install 'shardkit[cpu]'", "jax": "pip install 'jax[cpu]' (or jax[cuda12] on NVIDIA GPUs)",
            "torch": "pip install torch"}


def requested(name: str | None = None) -> str:
    """The backend asked for: ``name``, else ``$KERAS_BACKEND``, else tensorflow."""
    return name or os.environ.get("KERAS_BACKEND") or "tensorflow"


def select(name: str | None = None) -> str:
    """Make Keras load backend ``name`` (default ``requested()``); refuse, in one line, a backend that is not
    installed or not the one Keras has already loaded (with no ``name``, a loaded Keras' backend is kept)."""
    if name is None and "keras" in sys.modules:
        return current()
    name = requested(name)
    if name not in BACKENDS:
        raise ValueError(f"Keras backend {name!r} (--backend or $KERAS_BACKEND) is not one of {', '.join(BACKENDS)}")
    if importlib.util.find_spec(_PACKAGE[name][0]) is None:
        raise ValueError(f"--backend {name}: {_PACKAGE[name][0]} is not installed; {_INSTALL[name]}")
    if "keras" in sys.modules:
        import keras

        loaded = keras.backend.backend()
        if loaded != name:
            raise ValueError(f"--backend {name}: Keras has already loaded its {loaded} backend in this process; "
                             f"set KERAS_BACKEND={name} before starting Python")
        return name
    os.environ["KERAS_BACKEND"] = name
    if name == "torch":  # torch first: triton, which Keras' torch backend loads, crashes once TensorFlow is loaded
        import keras  # noqa: F401
    return name


def version(name: str) -> str:
    """The installed version of a backend's package ('' when it is not installed)."""
    for dist in _PACKAGE[name][1]:
        try:
            return importlib.metadata.version(dist)
        except importlib.metadata.PackageNotFoundError:
            continue
    return ""


def current() -> str:
    """The backend Keras runs on in this process (imports Keras)."""
    import keras

    return keras.backend.backend()
