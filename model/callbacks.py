"""The trainer's Keras callbacks: early stopping, best checkpoint, logs, resume, throughput."""
from __future__ import annotations

import contextlib
import os
import time
import warnings
from collections.abc import Iterator

import keras

from ctrflow.pipeline import artifacts as af


def make_callbacks(model_dir: str, *, patience: int, resume: bool,
                   plateau: tuple[float, int] | None = None) -> list[keras.callbacks.Callback]:
    """Early stopping on validation AUC (``val_auc``), best checkpoint, TensorBoard, and the resume backup.

    ``plateau=(factor, epochs)``: the main optimiser's learning rate is
    multiplied by ``factor`` after ``epochs`` epochs without a validation AUC
    gain (``ModelConfig.lr_schedule == "plateau"``). It runs before early
    stopping so a drop gets its chance before ``patience`` ends the run.

    The backup (``save_weights``) holds the optimiser slots and iteration
    count too, so a resumed run continues the same optimisation from the last
    finished epoch (or the one before, when the process died while writing
    it); Keras deletes it once training ends normally.
    Early-stopping patience and the best-so-far AUC start afresh on resume.
    """
    import tensorflow as tf

    ckpt_dir = os.path.join(model_dir, af.CHECKPOINTS)
    tf.io.gfile.makedirs(ckpt_dir)  # gs:// too
    callbacks: list[keras.callbacks.Callback] = []
    if plateau is not None:
        factor, epochs = plateau
        callbacks.append(keras.callbacks.ReduceLROnPlateau(monitor="val_auc", mode="max", factor=factor,
                                                           patience=epochs, min_delta=0.0, verbose=1))
    callbacks += [
        keras.callbacks.EarlyStopping(monitor="val_auc", mode="max", patience=patience,
                                      restore_best_weights=True, verbose=1),
        keras.callbacks.ModelCheckpoint(os.path.join(ckpt_dir, af.BEST_WEIGHTS), monitor="val_auc", mode="max",
                                        save_best_only=True, save_weights_only=True),
        keras.callbacks.TensorBoard(os.path.join(model_dir, af.LOGS), profile_batch=0),
    ]
    if resume:
        # double_checkpoint: the previous backup is kept beside the new one, so a process killed while it writes
        # latest.weights.h5 (a preempted worker) resumes from the one before instead of failing on a torn file
        callbacks.append(keras.callbacks.BackupAndRestore(os.path.join(ckpt_dir, af.RESUME_BACKUP),
                                                          double_checkpoint=True))
    return callbacks


@contextlib.contextmanager
def one_pass_epochs() -> Iterator[None]:
    """Inside: no "Your input ran out of data" warning from Keras, where running out is how an epoch ends.

    Without ``--steps-per-epoch`` an epoch is one pass over the training data,
    whose number of batches tf.data cannot know ahead (the holdout is a filter);
    Keras learns it when the first epoch runs out, and warns as if data were
    missing. The validation passes end the same way. With ``--steps-per-epoch``
    the training data repeats and never runs out.
    """
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="Your input ran out of data", category=UserWarning)
        yield


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
        self._start, self._epoch_batches, self._last_batch_end = 0.0, 0, 0.0

    def on_epoch_begin(self, epoch, logs=None):
        self._start, self._epoch_batches = time.perf_counter(), 0

    def on_train_batch_end(self, batch, logs=None):
        self._epoch_batches = batch + 1
        self._last_batch_end = time.perf_counter()

    def on_epoch_end(self, epoch, logs=None):
        if self._epoch_batches:  # no Keras validation pass closed this epoch (HoldoutValidation's runs)
            self._close(self._last_batch_end - self._start)

    def on_test_begin(self, logs=None):
        if self._epoch_batches:
            self._close(time.perf_counter() - self._start)

    def _close(self, elapsed: float) -> None:
        if self._first is None:
            self._first = (elapsed, self._epoch_batches)
        else:
            self.seconds += elapsed
            self.batches += self._epoch_batches
        self._epoch_batches = 0

    @property
    def examples_per_second(self) -> float:
        seconds, batches = (self.seconds, self.batches) if self.batches else (self._first or (0.0, 0))
        return batches * self.batch_size / seconds if seconds else 0.0


class HoldoutValidation(keras.callbacks.Callback):
    """``val_loss``, ``val_auc`` and ``val_logloss`` over the whole validation dataset, in this process.

    Under a tf.distribute strategy (``model.distribute``) Keras' own
    validation pass would split the holdout over the workers' replicas; this
    scores all of it on every worker with the (mirrored, so identical)
    weights, so early stopping, the best-epoch checkpoint and the plateau
    schedule take the same decision everywhere. Same metrics as the model's
    (thresholded AUC, log loss). Put it first: the callbacks after it read
    the logs it fills.
    """

    def __init__(self, dataset, auc_num_thresholds: int):
        super().__init__()
        self.dataset = dataset
        self.auc = keras.metrics.AUC(num_thresholds=auc_num_thresholds, from_logits=True, name="auc")
        self.logloss = keras.metrics.BinaryCrossentropy(from_logits=True, name="logloss")
        self._logits = None

    def on_epoch_end(self, epoch, logs=None):
        import tensorflow as tf

        if self._logits is None:  # one trace for every batch size (see model.train.predict_split)
            model = self.model
            self._logits = tf.function(lambda x: model(x, training=False)).get_concrete_function(
                self.dataset.element_spec[0])
        self.auc.reset_state()
        self.logloss.reset_state()
        for batch in self.dataset:
            x, y, weight = keras.utils.unpack_x_y_sample_weight(batch)
            logits = self._logits(x)
            y = tf.reshape(tf.cast(y, tf.float32), (-1, 1))
            weight = None if weight is None else tf.reshape(tf.cast(weight, tf.float32), (-1, 1))
            self.auc.update_state(y, logits, sample_weight=weight)
            self.logloss.update_state(y, logits, sample_weight=weight)
        reg = float(sum(float(loss) for loss in self.model.losses))
        if logs is not None:
            logloss = float(self.logloss.result())
            logs.update(val_loss=logloss + reg, val_auc=float(self.auc.result()), val_logloss=logloss)
