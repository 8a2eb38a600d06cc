"""Decoupled row weight decay of the sparse optimisers (model.optimizers._RowDecay)."""
from __future__ import annotations

import keras
import numpy as np
import pytest
import tensorflow as tf

from ctrflow.model.optimizers import LazyAdam, SparseAdagrad

ROWS, DIM, LR, WD = 6, 3, 0.1, 0.5


def _table(seed: int = 0) -> keras.Variable:
    return keras.Variable(np.random.default_rng(seed).normal(size=(ROWS, DIM)).astype("float32"))


def _sparse(ids: list[int], values: np.ndarray) -> tf.IndexedSlices:
    return tf.IndexedSlices(tf.constant(values, tf.float32), tf.constant(ids), tf.constant([ROWS, DIM]))


@pytest.mark.parametrize("cls", [LazyAdam, SparseAdagrad])
def test_decay_shrinks_rows_by_the_factor_of_every_step_since_last_touched(cls) -> None:
    """Zero gradients: only the decay moves a row. Row 1 touched at steps 1 and 5, row 4 only at
    step 5, rows never touched stay: each touched row ends at (1 - lr*wd)**5 of its start,
    as a dense AdamW would leave it after 5 steps."""
    table = _table()
    before = table.numpy().copy()
    opt = cls(learning_rate=LR, row_weight_decay=WD)
    opt.build([table])
    zero = np.zeros((1, DIM), "float32")
    touches = {1: [1], 2: [0 + 2], 3: [2], 4: [2], 5: [1, 4]}
    for step in range(1, 6):
        ids = touches[step]
        opt.apply_gradients([(_sparse(ids, np.repeat(zero, len(ids), 0)), table)])
    keep = 1 - LR * WD  # 0.95
    expected = before.copy()
    expected[[1, 4]] *= keep ** 5
    expected[2] *= keep ** 4  # touched last at step 4
    np.testing.assert_allclose(table.numpy(), expected, rtol=1e-6)
    np.testing.assert_array_equal(table.numpy()[[0, 3, 5]], before[[0, 3, 5]])


def test_lazy_adam_with_row_decay_equals_keras_adamw_on_rows_touched_every_step() -> None:
    """Rows touched on every step: lazy Adam is Adam, so the result must be Keras' AdamW."""
    ours, ref = _table(), _table()
    lazy = LazyAdam(learning_rate=LR, row_weight_decay=WD)
    adamw = keras.optimizers.AdamW(learning_rate=LR, weight_decay=WD)
    lazy.build([ours])
    adamw.build([ref])
    rng = np.random.default_rng(1)
    for _ in range(4):
        g = rng.normal(size=(ROWS, DIM)).astype("float32")
        lazy.apply_gradients([(_sparse(list(range(ROWS)), g), ours)])
        adamw.apply_gradients([(tf.constant(g), ref)])
    np.testing.assert_allclose(ours.numpy(), ref.numpy(), rtol=1e-5, atol=1e-6)


def test_without_row_decay_nothing_changes_and_config_round_trips() -> None:
    opt = LazyAdam(learning_rate=LR, row_weight_decay=0.25)
    assert LazyAdam.from_config(opt.get_config()).row_weight_decay == 0.25
    table = _table()
    plain = LazyAdam(learning_rate=LR)
    plain.build([table])
    before = table.numpy().copy()
    plain.apply_gradients([(_sparse([3], np.zeros((1, DIM), "float32")), table)])
    np.testing.assert_array_equal(table.numpy(), before)
    with pytest.raises(ValueError, match="row_weight_decay"):
        LazyAdam(row_weight_decay=-1.0)
