"""tf.distribute set-up: device options, the strategy for ``--strategy``, and who this worker is."""

from __future__ import annotations

import os
from dataclasses import dataclass

import tensorflow as tf

from shardkit.train import keras_compat
from shardkit.train.options import PRECISIONS, STRATEGIES


def configure_devices(logical_cpus: int = 0) -> None:
    """GPU memory growth on (never a fixed fraction); optionally split the CPU into ``logical_cpus`` devices.

    Must run before TensorFlow initialises its devices (before the first op).
    """
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


def make_strategy(name: str = "auto") -> tf.distribute.Strategy:
    """auto: MirroredStrategy over the GPUs when there are several, else one device; one: one device;
    mirrored: every local GPU (or every logical CPU when there is no GPU); multiworker: from ``TF_CONFIG``."""
    if name not in STRATEGIES:
        raise ValueError(f"strategy must be one of {STRATEGIES}, not {name!r}")
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


def worker_of(strategy: tf.distribute.Strategy) -> Worker:
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
