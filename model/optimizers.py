"""Optimisers that update only the embedding rows a batch touched.

Why: the gradient of an embedding lookup is a ``tf.IndexedSlices`` (the rows
of the batch), but Keras 3's Adam/Adagrad/FTRL mix it with their dense slot
variables, so every step reads and writes the *whole* table and its slots:
step time grows with table size (BENCHMARKS.md, training: speed: at batch
1024 Keras' dense Adam trains 47,650 examples/s with 10,000 table rows and
6,014 with 3,000,000; these sparse updates 24,221 and 26,633). The subclasses here keep Keras' dense math for dense
gradients and apply row-sparse updates for ``IndexedSlices``:

- ``SparseAdagrad`` and ``SparseFtrl``: the dense update (rows without
  gradient would not change anyway), just O(batch rows) instead of O(table).
  Two deliberate differences: duplicate ids are summed before squaring (Keras
  squares each occurrence), and FTRL leaves never-touched rows at their
  initial value (dense FTRL resets them to 0 on its first step; identical for
  zero-initialised weights, FTRL's usual setting).
- ``LazyAdam``: Adam moments are decayed and applied only on the touched rows
  ("lazy Adam", as in TF-Addons/PyTorch ``SparseAdam``). Dense Adam keeps
  moving unseen rows on stale momentum; the lazy form is the usual choice for
  CTR embeddings and what makes Adam's step cost independent of vocabulary.

**Decoupled row weight decay** (``row_weight_decay``, AdamW-style; LazyAdam
and SparseAdagrad): an L2 term in the loss barely regularises under adaptive
optimisers (their step size does not grow with the gradient, and the term is
divided by the batch size), so each touched row is instead shrunk by
``(1 - lr * wd)`` per step, before the adaptive update, as AdamW does for
every weight. A dense AdamW would shrink *every* row on every step; here a
row is shrunk only when a batch touches it, by ``(1 - lr * wd) ** k`` where
``k`` is the number of steps since it was last touched (a ``last_step`` slot
per row, 4 bytes): exactly the dense decay for a constant learning rate. With
a learning-rate schedule the current rate stands in for the skipped steps'
rates (an approximation, exact when the rate changes slowly). Only sparse
(``IndexedSlices``) gradients are decayed: embedding and linear rows, not DNN
kernels or biases (``kernel_l2`` covers kernels). ``set_row_weight_decay``
gives some variables their own rate (``ModelConfig.linear_row_weight_decay``:
the first-order and cross weights).

Duplicate ids in a batch are summed first (``tf.unique`` + segment sum), as
in the dense gradient. They are regular Keras optimisers (serialisable,
checkpointed slots), selected by ``make_optimizer`` when
``ModelConfig.sparse_updates`` is on. Each finds the slot variables Keras
created for it through ``compat.keras.SlotVariables``.
"""
from __future__ import annotations

import keras
import tensorflow as tf

from ctrflow.common.compat.keras import SlotVariables

register = keras.saving.register_keras_serializable(package="ctrflow")


def _tf_variable(v):
    """The ``tf.Variable`` behind a Keras variable (scatter/gather need it)."""
    return v.value if isinstance(v, keras.Variable) else v


def _dedup(grad: tf.IndexedSlices, dtype) -> tuple[tf.Tensor, tf.Tensor]:
    """(unique row ids, summed gradient rows in ``dtype``) of an ``IndexedSlices`` gradient."""
    rows, positions = tf.unique(grad.indices)
    summed = tf.math.unsorted_segment_sum(grad.values, positions, tf.shape(rows)[0])
    return rows, tf.cast(summed, dtype)


def _rows(v, ids: tf.Tensor) -> tf.Tensor:
    return tf.gather(_tf_variable(v), ids)


def _scatter(v, ids: tf.Tensor, values: tf.Tensor) -> None:
    _tf_variable(v).scatter_update(tf.IndexedSlices(values, ids))


class _Slots:
    """Mixin: each variable's index and slot variables (``compat.keras.SlotVariables``), found once at build."""

    SLOTS: tuple[str, ...] = ()  # the Keras optimizer's slot names (``add_variable_from_reference``)

    def build(self, var_list):
        super().build(var_list)
        self._slots = SlotVariables(self, var_list, self.SLOTS)


class _RowDecay(_Slots):
    """Mixin: decoupled weight decay of the rows a sparse gradient touches, with catch-up.

    ``row_weight_decay`` is a Keras-serialised constructor argument; the
    ``last_step`` slots (step at which each row was last decayed, 0 = never)
    are created for every variable, but hold one float per *row* only.
    """

    def __init__(self, *args, row_weight_decay: float = 0.0, **kwargs):
        super().__init__(*args, **kwargs)
        if row_weight_decay < 0:
            raise ValueError(f"row_weight_decay must be >= 0, got {row_weight_decay}")
        self.row_weight_decay = float(row_weight_decay)
        self._last_steps: list = []
        self._rate_paths: dict[str, float] = {}  # variable path -> its rate (set_row_weight_decay)
        self._rates: dict[int, float] = {}  # variable index -> its rate, at build

    def set_row_weight_decay(self, variables, rate: float) -> None:
        """Decay ``variables``' rows at ``rate`` instead of ``row_weight_decay`` (call before build)."""
        if self.built:
            raise ValueError("set_row_weight_decay must be called before the optimizer is built")
        if rate < 0:
            raise ValueError(f"row weight decay must be >= 0, got {rate}")
        self._rate_paths.update({v.path: float(rate) for v in variables})  # paths, not variables: no tracking

    def _rate(self, variable) -> float:
        return self._rates.get(self._slots.index(variable), self.row_weight_decay)

    def build(self, var_list):
        super().build(var_list)
        self._rates = {i: self._rate_paths[v.path] for i, v in enumerate(var_list) if v.path in self._rate_paths}
        if not self.row_weight_decay and not any(self._rates.values()):
            return
        self._last_steps = [self.add_variable((v.shape[0],) if len(v.shape) else (), initializer="zeros",
                                              dtype="float32", name="last_step") for v in var_list]

    def _decayed_rows(self, variable, ids: tf.Tensor, learning_rate) -> tf.Tensor:
        """The touched rows after their decay for every step since they were last touched."""
        w = _rows(variable, ids)
        rate = self._rate(variable)
        if not rate:
            return w
        last_var = self._last_steps[self._slots.index(variable)]
        step = tf.cast(self.iterations + 1, tf.float32)
        skipped = step - _rows(last_var, ids)
        _scatter(last_var, ids, tf.fill(tf.shape(ids), step))
        keep = 1.0 - tf.cast(learning_rate, tf.float32) * rate
        factor = tf.pow(keep, skipped)
        factor = tf.reshape(tf.cast(factor, w.dtype), [-1] + [1] * (len(w.shape) - 1))
        return w * factor

    def get_config(self):
        return {**super().get_config(), "row_weight_decay": self.row_weight_decay}


@register
class LazyAdam(_RowDecay, keras.optimizers.Adam):
    """Adam; sparse gradients update only their rows' moments and weights (and decay them)."""

    SLOTS = ("momentum", "velocity")

    def update_step(self, gradient, variable, learning_rate):
        if not isinstance(gradient, tf.IndexedSlices) or self.amsgrad:
            return super().update_step(gradient, variable, learning_rate)
        dtype = variable.dtype
        ids, g = _dedup(gradient, dtype)
        step = tf.cast(self.iterations + 1, dtype)
        beta_1, beta_2 = tf.cast(self.beta_1, dtype), tf.cast(self.beta_2, dtype)
        alpha = tf.cast(learning_rate, dtype) * tf.sqrt(1 - beta_2 ** step) / (1 - beta_1 ** step)
        m_var, v_var = self._slots.get("momentum", variable), self._slots.get("velocity", variable)
        m = _rows(m_var, ids) * beta_1 + (1 - beta_1) * g
        v = _rows(v_var, ids) * beta_2 + (1 - beta_2) * tf.square(g)
        _scatter(m_var, ids, m)
        _scatter(v_var, ids, v)
        w = self._decayed_rows(variable, ids, learning_rate)
        _scatter(variable, ids, w - alpha * m / (tf.sqrt(v) + self.epsilon))


@register
class SparseAdagrad(_RowDecay, keras.optimizers.Adagrad):
    """Adagrad; sparse gradients touch only their rows (same result as dense, without row decay)."""

    SLOTS = ("accumulator",)

    def update_step(self, gradient, variable, learning_rate):
        if not isinstance(gradient, tf.IndexedSlices):
            return super().update_step(gradient, variable, learning_rate)
        dtype = variable.dtype
        ids, g = _dedup(gradient, dtype)
        acc_var = self._slots.get("accumulator", variable)
        acc = _rows(acc_var, ids) + tf.square(g)
        _scatter(acc_var, ids, acc)
        lr = tf.cast(learning_rate, dtype)
        w = self._decayed_rows(variable, ids, learning_rate)
        _scatter(variable, ids, w - lr * g / tf.sqrt(acc + self.epsilon))


@register
class SparseFtrl(_Slots, keras.optimizers.Ftrl):
    """FTRL-proximal; sparse gradients touch only their rows (same result as dense)."""

    SLOTS = ("accumulator", "linear")

    def update_step(self, gradient, variable, learning_rate):
        if not isinstance(gradient, tf.IndexedSlices):
            return super().update_step(gradient, variable, learning_rate)
        dtype = variable.dtype
        ids, g = _dedup(gradient, dtype)
        lr = tf.cast(learning_rate, dtype)
        acc_var, linear_var = self._slots.get("accumulator", variable), self._slots.get("linear", variable)
        w, acc, linear = _rows(variable, ids), _rows(acc_var, ids), _rows(linear_var, ids)
        power = -self.learning_rate_power
        l2 = self.l2_regularization_strength + self.beta / (2.0 * lr)
        new_acc = acc + tf.square(g)
        linear = linear + g + 2 * self.l2_shrinkage_regularization_strength * w - (
            (new_acc ** power - acc ** power) / lr) * w
        quadratic = new_acc ** power / lr + 2 * l2
        l1 = self.l1_regularization_strength
        w = (tf.clip_by_value(linear, -l1, l1) - linear) / quadratic
        _scatter(linear_var, ids, linear)
        _scatter(acc_var, ids, new_acc)
        _scatter(variable, ids, w)
