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




def test_a_variable_decays_at_its_own_rate() -> None:
    """set_row_weight_decay: one table at 0 (kept), one at 2.0, one at the optimiser's rate; zero
    gradients, 3 steps touching every row -> factors (1 - lr*rate)**3."""
    emb, linear, other = _table(0), _table(1), _table(2)
    before = [t.numpy().copy() for t in (emb, linear, other)]
    opt = LazyAdam(learning_rate=LR, row_weight_decay=WD)
    opt.set_row_weight_decay([linear], 0.0)
    opt.set_row_weight_decay([other], 2.0)
    opt.build([emb, linear, other])
    zero = np.zeros((ROWS, DIM), "float32")
    for _ in range(3):
        opt.apply_gradients([(_sparse(list(range(ROWS)), zero), t) for t in (emb, linear, other)])
    np.testing.assert_allclose(emb.numpy(), before[0] * (1 - LR * WD) ** 3, rtol=1e-6)
    np.testing.assert_array_equal(linear.numpy(), before[1])
    np.testing.assert_allclose(other.numpy(), before[2] * (1 - LR * 2.0) ** 3, rtol=1e-6)
    with pytest.raises(ValueError, match="before the optimizer is built"):
        opt.set_row_weight_decay([other], 1.0)


def test_a_variable_rate_alone_creates_the_decay_state() -> None:
    """No default decay, one table at 2.0: its touched rows shrink by (1 - lr*2), the other table keeps."""
    table, other = _table(2), _table(3)
    before, before_other = table.numpy().copy(), other.numpy().copy()
    opt = LazyAdam(learning_rate=LR)
    opt.set_row_weight_decay([table], 2.0)
    opt.build([other, table])
    zero = np.zeros((2, DIM), "float32")
    opt.apply_gradients([(_sparse([0, 4], zero), table), (_sparse([0, 4], zero), other)])
    expected = before.copy()
    expected[[0, 4]] *= 1 - LR * 2.0
    np.testing.assert_allclose(table.numpy(), expected, rtol=1e-6)
    np.testing.assert_array_equal(other.numpy(), before_other)


@pytest.mark.parametrize("wide_optimizer", [None, "adam"])
def test_compile_model_gives_the_linear_weights_their_own_decay(wide_optimizer: str | None) -> None:
    """ModelConfig.linear_row_weight_decay reaches whichever optimiser holds the Linear layer's weights
    (the main one, or the wide one); every other weight keeps row_weight_decay."""
    from ctrflow.model.config import ModelConfig
    from ctrflow.model.models import build_model, compile_model
    from ctrflow.pipeline.layout import FeatureLayout, SparseFeature

    layout = FeatureLayout(sparse=(SparseFeature("a", 5), SparseFeature("b", 7),
                                   SparseFeature("a_x_b", 11, wide_only=True)), dense=(), label="y")
    config = ModelConfig(model="deepfm", embedding_dim=4, hidden_units=(8,), row_weight_decay=0.5,
                         linear_row_weight_decay=0.0, wide_optimizer=wide_optimizer)
    model = compile_model(build_model(layout, config), config)
    linear = model.linear.trainable_variables
    holder = model.wide_optimizer or model.optimizer
    assert linear and all(holder._rate(v) == 0.0 for v in linear)
    ids = {id(v) for v in linear}
    rest = [v for v in model.trainable_variables if id(v) not in ids]
    assert rest and all(model.optimizer._rate(v) == 0.5 for v in rest)
