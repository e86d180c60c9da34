"""What a training run can be told: the reader's options, the choices the trainer takes, and ``FitConfig``.

Free of TensorFlow, so the command line takes its choices and defaults from here and still parses (and
refuses a bad value) without importing it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

AUTOTUNE = -1  # tf.data.AUTOTUNE
SAMPLING_MODES = ("epoch", "replacement", "balanced")
SEQUENCE_ENCODINGS = ("onehot", "codes")
STRATEGIES = ("auto", "one", "mirrored", "multiworker")
PRECISIONS = ("float32", "mixed_float16", "mixed_bfloat16")


@dataclass(frozen=True)
class ReadOptions:
    """How to read: parallelism, shuffling, output encodings and what to do with corrupt shards."""

    cycle_length: int | None = 8  # shards read at once; None = AUTOTUNE (cycle-length table, docs/benchmarks.md)
    block_length: int = 16  # consecutive records taken from one shard before moving on to the next
    num_parallel_calls: int = AUTOTUNE
    shuffle_buffer_mb: float = 32.0  # training shuffle buffer, in decoded-example megabytes
    deterministic: bool = True  # required for exact resume; False lets tf.data reorder for speed
    cache: bool = False  # cache the decoded split in memory (small validation/test splits)
    sequence_encoding: str = "onehot"  # "onehot" (float32 L x codes) or "codes" (int32 L, for an Embedding)
    rescale_images: bool = False  # False: uint8 images (rescale in the model); True: float32 in [0, 1]
    with_row_id: bool = False  # x becomes a dict {feature: x, "row_id": ids} (a dict x gains "row_id")
    skip_corrupt: bool = False  # read only the intact prefix of each shard (see ``open_dataset``)
    read_buffer_bytes: int = 256 << 10  # per open shard; TensorFlow's default
    readahead_mb: float = 256.0  # shard bytes asked for ahead of the reader, in its order; 0: off (docs/benchmarks.md)

    def __post_init__(self) -> None:
        if self.sequence_encoding not in SEQUENCE_ENCODINGS:
            raise ValueError(f"sequence_encoding must be one of {SEQUENCE_ENCODINGS}, not {self.sequence_encoding!r}")


@dataclass
class FitConfig:
    """Everything ``shardkit-train fit`` takes; saved as config.json so ``evaluate`` can rebuild the model."""

    dataset: str
    model: str
    epochs: int
    batch_size: int
    out: str
    seed: int = 0
    strategy: str = STRATEGIES[0]
    sampling: str = SAMPLING_MODES[0]
    learning_rate: float = 1e-3
    patience: int = 5  # EarlyStopping on val_loss; 0 = off (and off without a validation split)
    backup_every: int = 0  # steps between mid-epoch backups; 0 = about four per epoch
    precision: str = PRECISIONS[0]
    xla: bool = False
    backend: str | None = None  # Keras backend: tensorflow, jax or torch; None = $KERAS_BACKEND, else tensorflow
    steps_per_execution: int | str = 1  # train steps per call to the device; "auto": measured (1 on CPU)
    sequence_encoding: str = ReadOptions.sequence_encoding
    skip_corrupt: bool = ReadOptions.skip_corrupt
    deterministic: bool = ReadOptions.deterministic
    cycle_length: int | None = ReadOptions.cycle_length  # None = AUTOTUNE
    shuffle_buffer_mb: float = ReadOptions.shuffle_buffer_mb
    readahead_mb: float = ReadOptions.readahead_mb
    cache_validation: bool = False
    repeat: int = 1
    verbose: Any = "auto"
    tensorboard: bool = True
    extra: dict[str, Any] = field(default_factory=dict)

    def read_options(self, with_row_id: bool = False) -> ReadOptions:
        return ReadOptions(
            cycle_length=self.cycle_length,
            shuffle_buffer_mb=self.shuffle_buffer_mb,
            readahead_mb=self.readahead_mb,
            deterministic=self.deterministic,
            cache=self.cache_validation,
            sequence_encoding=self.sequence_encoding,
            with_row_id=with_row_id,
            skip_corrupt=self.skip_corrupt,
        )
