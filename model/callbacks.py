"""The trainer's Keras callbacks: early stopping, best checkpoint, logs, resume, throughput."""
from __future__ import annotations

import os
import time

import keras


def make_callbacks(model_dir: str, *, patience: int, resume: bool,
                   plateau: tuple[float, int] | None = None) -> list[keras.callbacks.Callback]:
    """Early stopping on validation AUC (``val_auc``), best checkpoint, TensorBoard, and the resume backup.

    ``plateau=(factor, epochs)``: the main optimiser's learning rate is
    multiplied by ``factor`` after ``epochs`` epochs without a validation AUC
    gain (``ModelConfig.lr_schedule == "plateau"``). It runs before early
    stopping so a drop gets its chance before ``patience`` ends the run.

    The backup (``save_weights``) holds the optimiser slots and iteration
    count too, so a resumed run continues the same optimisation from the last
    finished epoch; Keras deletes it once training ends normally.
    Early-stopping patience and the best-so-far AUC start afresh on resume.
    """
    import tensorflow as tf

    ckpt_dir = os.path.join(model_dir, "checkpoints")
    tf.io.gfile.makedirs(ckpt_dir)  # gs:// too
    callbacks: list[keras.callbacks.Callback] = []
    if plateau is not None:
        factor, epochs = plateau
        callbacks.append(keras.callbacks.ReduceLROnPlateau(monitor="val_auc", mode="max", factor=factor,
                                                           patience=epochs, min_delta=0.0, verbose=1))
    callbacks += [
        keras.callbacks.EarlyStopping(monitor="val_auc", mode="max", patience=patience,
                                      restore_best_weights=True, verbose=1),
        keras.callbacks.ModelCheckpoint(os.path.join(ckpt_dir, "best.weights.h5"), monitor="val_auc", mode="max",
                                        save_best_only=True, save_weights_only=True),
        keras.callbacks.TensorBoard(os.path.join(model_dir, "logs"), profile_batch=0),
    ]
    if resume:
        callbacks.append(keras.callbacks.BackupAndRestore(os.path.join(ckpt_dir, "backup")))
    return callbacks


class Throughput(keras.callbacks.Callback):
    """Training examples/s, without the validation passes.

    The first epoch includes tracing/compilation, so it only counts when it
    is the only one.
    """

    def __init__(self, batch_size: int):
        super().__init__()
        self.batch_size = batch_size
        self.seconds, self.batches = 0.0, 0
        self._first: tuple[float, int] | None = None
        self._start, self._epoch_batches = 0.0, 0

    def on_epoch_begin(self, epoch, logs=None):
        self._start, self._epoch_batches = time.perf_counter(), 0

    def on_train_batch_end(self, batch, logs=None):
        self._epoch_batches = batch + 1

    def on_test_begin(self, logs=None):
        elapsed = time.perf_counter() - self._start
        if self._first is None:
            self._first = (elapsed, self._epoch_batches)
        else:
            self.seconds += elapsed
            self.batches += self._epoch_batches

    @property
    def examples_per_second(self) -> float:
        seconds, batches = (self.seconds, self.batches) if self.batches else (self._first or (0.0, 0))
        return batches * self.batch_size / seconds if seconds else 0.0
