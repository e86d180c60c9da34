"""Device set-up: device options, the strategy for ``--strategy`` (tf.distribute on TensorFlow, a Keras
distribution on JAX, one device on torch), and who this worker is."""

from __future__ import annotations

import contextlib
import os
from dataclasses import dataclass
from typing import Any, Iterator

import tensorflow as tf

from shardkit.train import keras_compat
from shardkit.train.options import PRECISIONS, STRATEGIES


def configure_devices(logical_cpus: int = 0, backend: str = "tensorflow") -> None:
    """GPU memory growth on (never a fixed fraction); optionally split the CPU into ``logical_cpus`` devices
    (on JAX through ``XLA_FLAGS``). On JAX and torch TensorFlow only reads the input, so it sees no GPU.

    Must run before TensorFlow (and JAX) initialise their devices (before the first op).
    """
    if backend != "tensorflow":
        try:
            tf.config.set_visible_devices([], "GPU")
        except RuntimeError:
            pass  # devices already initialised; TensorFlow keeps what it has
    if backend == "jax" and logical_cpus > 1:
        flag = f"--xla_force_host_platform_device_count={logical_cpus}"
        os.environ["XLA_FLAGS"] = f"{os.environ.get('XLA_FLAGS', '')} {flag}".strip()
    for gpu in tf.config.list_physical_devices("GPU"):
        try:
            tf.config.experimental.set_memory_growth(gpu, True)
        except RuntimeError:
            pass  # devices already initialised; growth was decided then
    if logical_cpus > 1:
        cpu = tf.config.list_physical_devices("CPU")[0]
        try:
            tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * logical_cpus)
        except RuntimeError as e:
            raise RuntimeError(f"--logical-cpus {logical_cpus}: TensorFlow devices were already initialised") from e


class KerasDevices:
    """The devices Keras trains on under JAX or torch, with the members of ``tf.distribute.Strategy`` the
    trainer uses (``scope``, ``num_replicas_in_sync``, no cluster). Several JAX devices train data-parallel
    through ``keras.distribution.DataParallel``, set globally (JAX's ``fit`` reads it when it runs)."""

    cluster_resolver = None

    def __init__(self, devices: list[Any], distribution: Any = None) -> None:
        self.devices, self.distribution = devices, distribution
        self.num_replicas_in_sync = len(devices) if distribution is not None else 1
        self.name = "DataParallel" if distribution is not None else "OneDevice"

    @contextlib.contextmanager
    def scope(self) -> Iterator[None]:
        yield

    @contextlib.contextmanager
    def undistributed(self) -> Iterator[None]:
        """Run without the data-parallel layout (every device computes the whole batch): for batches whose size
        the devices do not divide, which ``DataParallel`` refuses."""
        import keras

        keras.distribution.set_distribution(None)
        try:
            yield
        finally:
            keras.distribution.set_distribution(self.distribution)


def strategy_name(strategy: Any) -> str:
    """What metrics.json calls the strategy: the tf.distribute class, DataParallel or OneDevice."""
    return strategy.name if isinstance(strategy, KerasDevices) else type(strategy).__name__


def _keras_devices(name: str, backend: str) -> KerasDevices:
    """JAX: data-parallel over every local device (auto with several, mirrored), else one; torch: one device."""
    if name == "multiworker" or (backend == "torch" and name == "mirrored"):
        raise ValueError(f"--strategy {name} runs on the tensorflow backend only (the {backend} backend trains on "
                         f"{'one device' if backend == 'torch' else 'the local devices'}); use --strategy auto or --backend tensorflow")
    import keras

    if backend == "torch":  # Keras' torch backend computes on the first GPU when there is one
        return KerasDevices(["cuda:0" if has_accelerator(backend) else "cpu"])
    devices = keras.distribution.list_devices()
    if name == "one" or len(devices) == 1:
        return KerasDevices(devices[:1])
    distribution = keras.distribution.DataParallel(devices=devices)
    keras.distribution.set_distribution(distribution)
    return KerasDevices(devices, distribution)


def even_batches(data: tf.data.Dataset, replicas: int, count: int | None = None, batch_size: int = 0) -> tf.data.Dataset:
    """Each batch cut to a multiple of ``replicas`` examples, batches left empty dropped: JAX's data-parallel
    layout needs every batch to split evenly over the devices. With the ``count`` examples of a split read in
    ``batch_size`` batches the result keeps a known length (Keras then reads no further)."""
    def size(y: Any) -> tf.Tensor:  # y: one target, or a dict of several
        return tf.shape(tf.nest.flatten(y)[0])[0]

    def cut(x: Any, y: Any) -> tuple[Any, Any]:
        keep = size(y) // replicas * replicas
        return tf.nest.map_structure(lambda t: t[:keep], (x, y))

    out = data.map(cut).filter(lambda x, y: size(y) > 0)
    if count is None:
        return out
    batches = count // batch_size + (1 if count % batch_size >= replicas else 0)
    return out.apply(tf.data.experimental.assert_cardinality(batches))


def make_strategy(name: str = "auto", backend: str = "tensorflow") -> Any:
    """auto: MirroredStrategy over the GPUs when there are several, else one device; one: one device;
    mirrored: every local GPU (or every logical CPU when there is no GPU); multiworker: from ``TF_CONFIG``.
    On JAX and torch a ``KerasDevices`` (see ``_keras_devices``)."""
    if name not in STRATEGIES:
        raise ValueError(f"strategy must be one of {STRATEGIES}, not {name!r}")
    if backend != "tensorflow":
        return _keras_devices(name, backend)
    if name == "multiworker":
        if "TF_CONFIG" not in os.environ:
            raise ValueError("--strategy multiworker needs TF_CONFIG (cluster and task) in the environment")
        strategy = tf.distribute.MultiWorkerMirroredStrategy()  # before any op: collectives configure at startup
        keras_compat.average_multiworker_logs()
        return strategy
    gpus = tf.config.list_logical_devices("GPU")
    if name == "mirrored" or (name == "auto" and len(gpus) > 1):
        devices = [d.name for d in gpus] or [d.name for d in tf.config.list_logical_devices("CPU")]
        return tf.distribute.MirroredStrategy(devices)
    return tf.distribute.OneDeviceStrategy(gpus[0].name if gpus else "/cpu:0")


def has_accelerator(backend: str) -> bool:
    """Whether the backend computes on a GPU/TPU (not the CPU)."""
    if backend == "jax":
        import jax

        return jax.default_backend() != "cpu"
    if backend == "torch":
        import torch

        return torch.cuda.is_available()
    return bool(tf.config.list_logical_devices("GPU"))


def set_precision(policy: str = "float32") -> None:
    """Keras global dtype policy; mixed precision only pays on GPUs/TPUs (the model keeps float32 outputs)."""
    if policy not in PRECISIONS:
        raise ValueError(f"precision must be one of {PRECISIONS}, not {policy!r}")
    import keras

    keras.mixed_precision.set_global_policy(policy)


@dataclass(frozen=True)
class Worker:
    """This process in the cluster: how many workers, its index, and whether it writes the run outputs."""

    count: int = 1
    index: int = 0
    is_chief: bool = True


def worker_of(strategy: Any) -> Worker:
    """Worker count/index from the strategy's cluster resolver (TF_CONFIG); chief = 'chief' or worker 0."""
    resolver = getattr(strategy, "cluster_resolver", None)
    cluster = resolver.cluster_spec().as_dict() if resolver is not None else {}
    if not cluster:
        return Worker()
    count = sum(len(cluster.get(k, [])) for k in ("chief", "worker"))
    task_type, task_id = resolver.task_type, int(resolver.task_id or 0)
    index = task_id + (len(cluster.get("chief", [])) if task_type == "worker" else 0)
    is_chief = task_type == "chief" or (task_type == "worker" and task_id == 0 and "chief" not in cluster)
    return Worker(count, index, is_chief)


def shard_policy(num_shards: int, num_workers: int) -> str:
    """FILE when every worker can get whole shards, else DATA (every worker reads all, keeps every n-th)."""
    return "FILE" if num_shards >= num_workers else "DATA"
