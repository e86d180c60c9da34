"""ResumableEarlyStopping: patience and best weights carried across a crash through the run's history."""

from __future__ import annotations

import keras
import numpy as np

from shardkit.train.callbacks import ResumableEarlyStopping


def _model() -> keras.Model:
    model = keras.Sequential([keras.Input((3,)), keras.layers.Dense(2)])
    model.compile(loss="mse")
    return model


def test_patience_counts_the_epochs_before_the_crash(tmp_path) -> None:
    model = _model()
    best = keras.Sequential([keras.Input((3,)), keras.layers.Dense(2)])
    best.save_weights(str(tmp_path / "best.weights.h5"))
    history = [1.0, 0.5, 0.6, 0.7]  # best at epoch 1, two epochs waited since
    stop = ResumableEarlyStopping(lambda: history, str(tmp_path / "best.weights.h5"), monitor="val_loss",
                                  patience=3, restore_best_weights=True)
    stop.set_model(model)
    before = [w.copy() for w in model.get_weights()]

    stop.on_train_begin()
    assert (stop.best, stop.best_epoch, stop.wait) == (0.5, 1, 2)
    assert all(np.array_equal(a, b) for a, b in zip(stop.best_weights, best.get_weights()))
    assert all(np.array_equal(a, b) for a, b in zip(model.get_weights(), before))  # training goes on from here

    stop.on_epoch_end(4, {"val_loss": 0.8})
    assert model.stop_training and stop.stopped_epoch == 4
    stop.on_train_end()
    assert all(np.array_equal(a, b) for a, b in zip(model.get_weights(), best.get_weights()))


def test_an_improvement_after_the_restart_resets_patience(tmp_path) -> None:
    model = _model()
    stop = ResumableEarlyStopping(lambda: [1.0, 0.5, 0.6, 0.7], None, monitor="val_loss", patience=3)
    stop.set_model(model)
    stop.on_train_begin()
    stop.on_epoch_end(4, {"val_loss": 0.4})
    assert not model.stop_training and (stop.best, stop.best_epoch, stop.wait) == (0.4, 4, 0)


def test_a_fresh_run_behaves_like_keras_early_stopping() -> None:
    model = _model()
    stop = ResumableEarlyStopping(lambda: [], None, monitor="val_loss", patience=1)
    stop.set_model(model)
    stop.on_train_begin()
    assert stop.wait == 0
    for epoch, loss in enumerate([1.0, 1.1]):
        stop.on_epoch_end(epoch, {"val_loss": loss})
    assert model.stop_training and stop.stopped_epoch == 1 and (stop.best, stop.best_epoch) == (1.0, 0)


def test_the_restored_best_survives_the_first_epoch_end() -> None:
    """Keras 3.3-3.6 set ``best`` to +-inf when they pick the monitor's direction at the first epoch end;
    the restored best must still be the one compared against, or patience silently restarts."""
    model = _model()
    stop = ResumableEarlyStopping(lambda: [1.0, 0.5, 0.6], None, monitor="val_loss", patience=2)
    stop.set_model(model)
    stop.on_train_begin()
    stop.on_epoch_end(3, {"val_loss": 0.55})  # worse than the restored 0.5: a second epoch without improvement
    assert (stop.best, stop.best_epoch, stop.wait) == (0.5, 1, 2)
    assert model.stop_training and stop.stopped_epoch == 3
