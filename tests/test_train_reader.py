"""shardkit.train.dataset on datasets written by the real converter: exact epochs, order, resume, modes, errors."""

from __future__ import annotations

import os
import shutil

import numpy as np
import pytest
import tensorflow as tf

from datasets import features_dataset, knots_dataset, proteins_dataset
from shardkit import spec
from shardkit.spec import DatasetError
from shardkit.train import dataset as reader
from shardkit.train import opening

BATCH = 32


@pytest.fixture(scope="module")
def knots(tmp_path_factory: pytest.TempPathFactory) -> str:
    return knots_dataset(tmp_path_factory, n_per_class=100, size=24, num_shards=4)


def _row_batches(stream: tf.data.Dataset) -> list[np.ndarray]:
    return [x["row_id"].numpy() for x, _ in stream]


INTERLEAVES = [{}, {"cycle_length": None, "block_length": 1}, {"cycle_length": 1, "block_length": 64}]


@pytest.mark.parametrize("interleave", INTERLEAVES, ids=["default", "autotune-block1", "one-shard-at-a-time"])
def test_each_training_example_once_per_epoch_in_a_new_order(knots: str, interleave: dict) -> None:
    ds = reader.open_dataset(knots)
    options = reader.ReadOptions(with_row_id=True, **interleave)
    plan = reader.training_plan(ds, BATCH)
    train_ids = set(reader.read_row_ids(ds, "train").tolist())
    assert len(train_ids) == ds.count("train") == 240
    assert plan.steps_per_epoch == 8 and plan.last_batch == 240 - 7 * BATCH and plan.dropped_per_epoch == 0

    batches = _row_batches(reader.train_dataset(ds, BATCH, 3, seed=7, options=options))
    assert len(batches) == 3 * plan.steps_per_epoch
    assert [len(b) for b in batches[:8]] == [BATCH] * 7 + [plan.last_batch]  # partial last batch kept
    epochs = [np.concatenate(batches[e * 8 : (e + 1) * 8]) for e in range(3)]
    for ids in epochs:
        assert len(ids) == len(set(ids.tolist())) == 240 and set(ids.tolist()) == train_ids
    assert not np.array_equal(epochs[0], epochs[1]) and not np.array_equal(epochs[1], epochs[2])

    again = _row_batches(reader.train_dataset(ds, BATCH, 3, seed=7, options=options))
    assert all(np.array_equal(a, b) for a, b in zip(batches, again))  # a function of (seed, epoch)
    other = _row_batches(reader.train_dataset(ds, BATCH, 1, seed=8, options=options))
    assert not np.array_equal(np.concatenate(other), epochs[0])


def test_the_class_sorted_source_arrives_mixed(knots: str) -> None:
    labels = np.concatenate([y.numpy() for _, y in reader.train_dataset(knots, BATCH, 1)])
    first = labels[:BATCH]
    assert len(set(first.tolist())) == 3  # class-sorted input fed single-class batches, and the model collapsed to one class


def test_resume_position_yields_exactly_the_unseen_rest(knots: str) -> None:
    options = reader.ReadOptions(with_row_id=True)
    full = _row_batches(reader.train_dataset(knots, BATCH, 2, seed=3, options=options))
    rest = _row_batches(reader.train_dataset(knots, BATCH, 2, seed=3, start_epoch=0, start_step=5, options=options))
    assert len(rest) == len(full) - 5
    assert all(np.array_equal(a, b) for a, b in zip(full[5:], rest))
    epoch1 = _row_batches(reader.train_dataset(knots, BATCH, 2, seed=3, start_epoch=1, options=options))
    assert all(np.array_equal(a, b) for a, b in zip(full[8:], epoch1))


def test_validation_is_the_whole_split_unshuffled_with_known_length(knots: str) -> None:
    ds = reader.open_dataset(knots)
    val = reader.eval_dataset(ds, "validation", 7, reader.ReadOptions(with_row_id=True))
    assert val.cardinality().numpy() == -(-ds.count("validation") // 7)
    ids = np.concatenate(_row_batches(val))
    assert np.array_equal(ids, reader.read_row_ids(ds, "validation"))
    assert np.array_equal(ids, np.concatenate(_row_batches(val)))  # same order every pass


def test_images_stay_uint8_until_the_model(knots: str) -> None:
    x, y = next(iter(reader.eval_dataset(knots, "test", 4)))
    assert x.dtype == tf.uint8 and tuple(x.shape) == (4, 24, 24, 3) and y.dtype == tf.int32
    scaled, _ = next(iter(reader.eval_dataset(knots, "test", 4, reader.ReadOptions(rescale_images=True))))
    np.testing.assert_allclose(scaled.numpy(), x.numpy() / 255.0, rtol=1e-6)


def test_replacement_and_balanced_sampling(knots: str) -> None:
    ds = reader.open_dataset(knots)
    options = reader.ReadOptions(with_row_id=True)
    drawn = np.concatenate(_row_batches(reader.train_dataset(ds, BATCH, 1, seed=1, options=options, sampling="replacement")))
    assert len(drawn) == 240
    distinct = len(set(drawn.tolist()))
    assert 0.5 * 240 < distinct < 0.8 * 240  # i.i.d. draws with replacement keep about 1 - 1/e distinct
    labels = np.concatenate([y.numpy() for _, y in reader.train_dataset(ds, BATCH, 1, seed=1, sampling="balanced")])
    assert len(labels) == 240 and np.bincount(labels).min() > 50


def test_balanced_sampling_evens_out_skewed_classes(tmp_path_factory: pytest.TempPathFactory) -> None:
    path = proteins_dataset(tmp_path_factory, n=400, max_length=80, num_shards=2)
    ds = reader.open_dataset(path)
    counts = np.asarray(ds.metadata.splits["train"].class_counts, float)
    plain = np.concatenate([y.numpy() for _, y in reader.train_dataset(ds, 64, 1, seed=2)])
    balanced = np.concatenate([y.numpy() for _, y in reader.train_dataset(ds, 64, 1, seed=2, sampling="balanced")])
    k = ds.metadata.label.num_classes
    spread = lambda labels: np.bincount(labels, minlength=k)[counts > 0].std() / len(labels)
    assert counts[counts > 0].std() > 0  # the EC classes of the example proteins are skewed
    assert len(balanced) == ds.count("train")
    assert spread(balanced) < spread(plain)


def test_sequences_one_hot_or_codes(tmp_path_factory: pytest.TempPathFactory) -> None:
    path = proteins_dataset(tmp_path_factory, n=400, max_length=80, num_shards=2)
    f = spec.read_metadata(path).features[0]
    x, _ = next(iter(reader.eval_dataset(path, "validation", 5)))
    assert tuple(x.shape) == (5, 80, f.num_codes) and x.dtype == tf.float32
    np.testing.assert_array_equal(x.numpy().sum(-1), 1.0)
    codes, _ = next(iter(reader.eval_dataset(path, "validation", 5, reader.ReadOptions(sequence_encoding="codes"))))
    assert codes.dtype == tf.int32 and tuple(codes.shape) == (5, 80)
    np.testing.assert_array_equal(codes.numpy(), x.numpy().argmax(-1))


def test_float_arrays(tmp_path_factory: pytest.TempPathFactory) -> None:
    path = features_dataset(tmp_path_factory, n=100, timesteps=10, dim=16)
    x, y = next(iter(reader.eval_dataset(path, "train", 8)))
    assert tuple(x.shape) == (8, 10, 16) and x.dtype == tf.float32 and set(y.numpy().tolist()) <= {0, 1}


def test_gzip_shards_read_the_same_examples(tmp_path_factory: pytest.TempPathFactory, knots: str) -> None:
    gz = knots_dataset(tmp_path_factory, n_per_class=100, size=24, num_shards=4, compression="gzip")
    assert reader.open_dataset(gz).metadata.compression == "GZIP"
    ids = lambda p: np.sort(np.concatenate(_row_batches(reader.train_dataset(p, BATCH, 1, options=reader.ReadOptions(with_row_id=True)))))
    np.testing.assert_array_equal(ids(gz), ids(knots))


def test_multi_worker_shards_are_disjoint_and_equal_length(knots: str) -> None:
    ds = reader.open_dataset(knots)
    for policy in ("FILE", "DATA"):
        plan = reader.training_plan(ds, BATCH, replicas=2, worker_count=2, policy=policy)
        seen = []
        for w in range(2):
            stream = reader.train_dataset(
                ds, BATCH, 1, options=reader.ReadOptions(with_row_id=True), replicas=2, worker=reader.WorkerShard(w, 2, policy)
            )
            batches = _row_batches(stream)
            assert len(batches) == plan.steps_per_epoch and all(len(b) == BATCH // 2 for b in batches)
            seen.append(set(np.concatenate(batches).tolist()))
        assert not seen[0] & seen[1]
        assert len(seen[0] | seen[1]) == plan.examples_per_epoch == 240 - plan.dropped_per_epoch


def test_missing_metadata_is_not_a_dataset(tmp_path, knots: str) -> None:
    partial = tmp_path / "partial"
    shutil.copytree(knots, partial)
    os.remove(partial / spec.METADATA_FILE)
    with pytest.raises(DatasetError, match="metadata.json.*not a complete"):
        reader.open_dataset(str(partial))


def _copy_with_damaged_shard(knots: str, dest, damage: str) -> str:
    shutil.copytree(knots, dest)
    shard = os.path.join(dest, spec.read_metadata(knots).splits["train"].shards[1].path)
    data = bytearray(open(shard, "rb").read())
    if damage == "truncate":
        data = data[: len(data) * 2 // 3]
    elif damage == "flip":
        data[len(data) // 2] ^= 0xFF
    else:
        os.remove(shard)
        return shard
    with open(shard, "wb") as f:
        f.write(bytes(data))
    return shard


def test_missing_or_truncated_shard_names_the_file(tmp_path, knots: str) -> None:
    missing = _copy_with_damaged_shard(knots, tmp_path / "missing", "remove")
    with pytest.raises(DatasetError, match=f"{missing}: shard is missing"):
        reader.open_dataset(str(tmp_path / "missing"))
    truncated = _copy_with_damaged_shard(knots, tmp_path / "truncated", "truncate")
    with pytest.raises(DatasetError, match=f"{truncated}: shard is .* bytes but metadata.json records"):
        reader.open_dataset(str(tmp_path / "truncated"))


def test_skip_corrupt_reads_the_intact_prefix_and_counts_the_loss(tmp_path, knots: str) -> None:
    shard = _copy_with_damaged_shard(knots, tmp_path / "t", "truncate")
    ds = reader.open_dataset(str(tmp_path / "t"), skip_corrupt=True)
    expected = spec.read_metadata(knots).splits["train"].shards[1].count
    assert 0 < ds.lost[shard] < expected
    ids = np.concatenate(_row_batches(reader.train_dataset(ds, BATCH, 1, options=reader.ReadOptions(with_row_id=True, skip_corrupt=True))))
    assert len(ids) == len(set(ids.tolist())) == 240 - ds.lost[shard]


def test_crc_failure_is_found_and_named(tmp_path, knots: str) -> None:
    shard = _copy_with_damaged_shard(knots, tmp_path / "f", "flip")
    ds = reader.open_dataset(str(tmp_path / "f"))  # same size: only reading finds it
    with pytest.raises(tf.errors.DataLossError):
        for _ in reader.train_dataset(ds, BATCH, 1):
            pass
    problems = opening.find_corrupt_shards(ds)
    assert len(problems) == 1 and problems[0].startswith(f"{shard}: record ")


def test_skip_corrupt_finds_a_crc_failure_up_front(tmp_path, knots: str) -> None:
    shard = _copy_with_damaged_shard(knots, tmp_path / "f", "flip")
    ds = reader.open_dataset(str(tmp_path / "f"), skip_corrupt=True)
    assert list(ds.lost) == [shard] and ds.lost[shard] > 0
    ids = np.concatenate(_row_batches(reader.train_dataset(ds, BATCH, 2, options=reader.ReadOptions(with_row_id=True, skip_corrupt=True))))
    assert len(ids) == 2 * (240 - ds.lost[shard])


def test_readme_snippet_takes_epochs_from_training_input(knots: str, recwarn: pytest.WarningsRecorder) -> None:
    """``model.fit(**training_input(...).fit_kwargs())`` runs exactly the stream's epochs, each over every
    training example, without Keras running out of data; passing epochs a second time is an error."""
    import keras

    inp = reader.training_input(knots, batch_size=BATCH, epochs=2, seed=0)
    model = keras.Sequential([keras.Input((24, 24, 3)), keras.layers.Rescaling(1 / 255), keras.layers.Flatten(),
                              keras.layers.Dense(3, activation="softmax")])
    model.compile("adam", "sparse_categorical_crossentropy", metrics=["accuracy"])
    history = model.fit(verbose=0, **inp.fit_kwargs())
    assert len(history.history["loss"]) == 2 and len(history.history["val_loss"]) == 2
    assert not [w for w in recwarn if "ran out of data" in str(w.message)]
    with pytest.raises(TypeError, match="epochs"):
        model.fit(epochs=3, **inp.fit_kwargs())
