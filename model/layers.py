"""Keras 3 building blocks of the CTR models.

Layers read the feature dict directly (keys from ``FeatureLayout``) so a model
is assembled from the layout alone. Only ``keras.ops`` is used, which keeps
them graph-friendly inside ``tf.function`` and trackable for SavedModel.
"""
from __future__ import annotations

import dataclasses
import itertools
from collections.abc import Mapping, Sequence
from typing import Any

import keras
from keras import ops

from ctrflow.common.errors import OptionsError
from ctrflow.pipeline.layout import GlobalIndex, SparseFeature

register = keras.saving.register_keras_serializable(package="ctrflow")


def stack_dense(features: Mapping[str, Any], names: Sequence[str]):
    """Dense features ``{name: [batch]}`` as one float32 ``[batch, len(names)]`` matrix."""
    return ops.stack([ops.reshape(ops.cast(features[n], "float32"), (-1,)) for n in names], axis=1)


def _split_columns(x, n: int):
    """``(x[:, :n], x[:, n:])``, by ``split`` when the width is static.

    Why: the gradient of a strided slice of a ``[batch, T, dim]`` tensor
    (StridedSliceGrad) cost more than the extra embedding gather it serves;
    split's gradient is a concat.
    """
    width = x.shape[1] if x.shape.rank is not None else None
    if width is None:
        return x[:, :n], x[:, n:]
    return ops.split(x, [n], axis=1) if n < width else (x, x[:, n:])


def ple_weights(ids, position, num_ids: int, missing_id: int | None = None):
    """Piecewise-linear encoding ``[batch, num_ids]`` of bucket ``ids`` and ``position`` in the bucket.

    Row i is ``[1]*i + [position] + [0]*rest``, so ``ple @ table`` is
    ``sum(table[:i]) + position * table[i]``: a function of the value that is
    linear inside each bucket and continuous at its edges (Gorishniy et al.
    2022, "On Embeddings for Numerical Features"). Bucket ids alone give a step
    function, which misses thresholds between quantiles (census capital_gain,
    age). The missing-value bucket (``missing_id``) is not ordered: one-hot.
    """
    ids = ops.reshape(ops.cast(ids, "int64"), (-1, 1))
    position = ops.reshape(ops.cast(position, "float32"), (-1, 1))
    index = ops.expand_dims(ops.arange(num_ids, dtype="int64"), 0)
    vec = ops.where(index < ids, 1.0, ops.where(index == ids, position, 0.0))
    if missing_id is not None:
        vec = ops.where(ids == missing_id, ops.cast(index == missing_id, "float32"), vec)
    return vec


def interpolation_weights(ids, position, num_ids: int, missing_id: int | None = None):
    """Weights ``[batch, num_ids]`` that interpolate linearly between the rows of bucket i and i + 1.

    ``(1 - position)`` on row i, ``position`` on row i + 1, so ``w @ table`` is
    ``table[i]`` at the bucket's lower edge and ``table[i + 1]`` at its upper
    edge: the same continuous piecewise-linear functions as ``ple_weights``,
    but each row is the value at one knot rather than an increment. Why it
    matters: under Adam every row moves by about the learning rate per step,
    so a sum of i increments moves up to i times faster (on the Criteo sample
    it trained to a lower validation AUC). A value at a point
    mass (position 0) gets exactly its bucket's row, as with bucket ids. The
    last value bucket has no next row (it is the missing bucket's, or none):
    it keeps its own row (flat above the top quantile).
    """
    ids = ops.reshape(ops.cast(ids, "int64"), (-1, 1))
    position = ops.reshape(ops.cast(position, "float32"), (-1, 1))
    index = ops.expand_dims(ops.arange(num_ids, dtype="int64"), 0)
    value_ids = num_ids - (1 if missing_id is not None else 0)
    position = ops.where((ids + 1 < value_ids) & (ids != missing_id if missing_id is not None else True),
                         position, 0.0)
    return ops.where(index == ids, 1.0 - position, ops.where(index == ids + 1, position, 0.0))


PIECEWISE_WEIGHTS = {"ple": ple_weights, "interpolate": interpolation_weights}


def make_activation(name: str) -> keras.layers.Layer:
    """Activation by name; a layer (not a function) because PReLU has weights."""
    if name == "prelu":
        return keras.layers.PReLU()
    if name == "leaky_relu":
        return keras.layers.LeakyReLU(negative_slope=0.01)
    if name in ("relu", "gelu", "tanh", "sigmoid"):
        return keras.layers.Activation(name)
    raise ValueError(f"unknown activation {name!r}")


def make_norm(name: str) -> keras.layers.Layer | None:
    if name == "batch":
        return keras.layers.BatchNormalization()
    if name == "layer":
        return keras.layers.LayerNormalization()
    if name == "none":
        return None
    raise ValueError(f"unknown norm {name!r}")


def _l2(strength: float) -> keras.regularizers.Regularizer | None:
    return keras.regularizers.L2(strength) if strength > 0 else None


@register
class FieldEmbedding(keras.layers.Layer):
    """Embeds every sparse field, and the global ``feat_index``, from ONE table.

    Why one table: a lookup per field is one kernel launch (and one gradient
    op) per field; shifting field j's ids by ``offsets[j]`` (the sum of the
    earlier fields' ``num_ids``) lets a single gather serve all fields. The
    global index gets its own row range after the per-field ones.

    Output ``[batch, num_fields, dim]``: the per-field fields in the given order,
    then the ``num_fields`` global positions (each row times its ``feat_value``).
    Multivalent fields (``[batch, L]`` padded with -1) are mean-pooled over
    their non-negative ids; an all-padding row embeds as zeros.

    ``piecewise`` ("interpolate" or "ple", see ``PIECEWISE_WEIGHTS``): fields
    with a ``position`` (bucketized numerics, univalent) embed as
    ``weights(id, position) @ rows`` over the field's own rows instead of their
    id's row: same table, same shape, so warm start copies rows as before.

    ``l2`` penalises only the rows looked up in the batch (``l2 * sum(rows^2) /
    batch``): penalising the whole table each step would cost O(table) and
    shrink ids the batch never saw.

    ``ordered=False`` returns the fields in gather order (interpolated
    numerics first): for a caller that sums over fields (``Linear``), which
    then skips the reordering gather and its gradient.
    """

    def __init__(
        self,
        fields: Sequence[SparseFeature | Mapping[str, Any]] = (),
        dim: int = 8,
        global_index: GlobalIndex | Mapping[str, Any] | None = None,
        l2: float = 0.0,
        embeddings_initializer: Any = "random_normal",
        piecewise: str | None = None,
        ordered: bool = True,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.ordered = ordered
        self.fields = tuple(f if isinstance(f, SparseFeature) else SparseFeature(**f) for f in fields)
        if piecewise is not None and piecewise not in PIECEWISE_WEIGHTS:
            raise ValueError(f"piecewise={piecewise!r}; expected one of {sorted(PIECEWISE_WEIGHTS)} or None")
        self.piecewise = piecewise
        self._ple_fields = [i for i, f in enumerate(self.fields) if piecewise and f.position and not f.multivalent]
        if isinstance(global_index, Mapping):
            global_index = GlobalIndex(**{**global_index, "fields": tuple(global_index.get("fields", ()))})
        self.global_index = global_index
        self.dim = dim
        self.l2 = l2
        self.embeddings_initializer = keras.initializers.get(embeddings_initializer)
        sizes = [f.num_ids for f in self.fields] + ([global_index.num_ids] if global_index else [])
        if not sizes:
            raise ValueError("FieldEmbedding needs at least one sparse field or a global index")
        self.offsets = tuple(itertools.accumulate(sizes, initial=0))[:-1]
        self.num_rows = sum(sizes)
        self.num_fields = len(self.fields) + (global_index.num_fields if global_index else 0)
        # Univalent fields first (one stack), multivalent after (pooled one by one);
        # `_perm` puts the pooled result back in the given field order.
        # Interpolated (piecewise) fields lead the univalent block, so their rows are one slice.
        self._univalent = self._ple_fields + [i for i, f in enumerate(self.fields)
                                              if not f.multivalent and i not in self._ple_fields]
        self._multivalent = [i for i, f in enumerate(self.fields) if f.multivalent]
        gather_order = self._univalent + self._multivalent
        perm = [gather_order.index(i) for i in range(len(self.fields))]
        identity = perm == list(range(len(perm)))
        keep_order = ordered or piecewise == "ple"  # ple indexes the pooled fields by position
        self._perm = None if identity or not keep_order else perm + list(range(len(perm), self.num_fields))

    def build(self, input_shape: Any = None) -> None:
        self.embeddings = self.add_weight(
            shape=(self.num_rows, self.dim), initializer=self.embeddings_initializer, name="embeddings"
        )

    def _univalent_ids(self, features: Mapping[str, Any]):
        """The univalent fields' table rows, int64 ``[batch, U]`` in gather order (static rank), or None."""
        if not self._univalent:
            return None
        ids = ops.stack([ops.reshape(ops.cast(features[self.fields[i].name], "int64"), (-1,))
                         for i in self._univalent], axis=1)
        return ids + ops.array([self.offsets[i] for i in self._univalent], "int64")

    def _offset_ids(self, features: Mapping[str, Any], univalent=None):
        """All ids as one int64 ``[batch, T]`` matrix of table rows; -1 marks padding.

        ``univalent``: ``_univalent_ids(features)`` when the caller already has it.
        """
        parts = []
        if self._univalent:
            parts.append(self._univalent_ids(features) if univalent is None else univalent)
        for i in self._multivalent:
            ids = ops.cast(features[self.fields[i].name], "int64")
            parts.append(ops.where(ids >= 0, ids + self.offsets[i], -1))
        if self.global_index is not None:
            ids = ops.cast(features[self.global_index.index_key], "int64")
            parts.append(ids + self.offsets[-1])
        return parts[0] if len(parts) == 1 else ops.concatenate(parts, axis=1)

    def call(self, features: Mapping[str, Any], training: bool = False):
        univalent = self._univalent_ids(features)
        ids = self._offset_ids(features, univalent)
        p = len(self._ple_fields) if self.piecewise == "interpolate" else 0
        if p:  # each interpolated field's upper knot row rides along in the same gather
            upper_ids, upper_weight = self._upper_knots(univalent[:, :p], features)
            rows = ops.take(self.embeddings, ops.maximum(ops.concatenate([upper_ids, ids], axis=1), 0), axis=0)
            upper, rows = _split_columns(rows, p)
        else:
            rows = ops.take(self.embeddings, ops.maximum(ids, 0), axis=0)  # [batch, T, dim]
        if self._multivalent:
            rows = rows * ops.expand_dims(ops.cast(ids >= 0, rows.dtype), -1)
        if training and self.l2 > 0:
            batch = ops.cast(ops.shape(rows)[0], rows.dtype)
            self.add_loss(self.l2 * ops.sum(ops.square(rows)) / batch)
        if p:  # row_i + position * (row_{i+1} - row_i) on the leading interpolated fields
            lower, rest = _split_columns(rows, p)
            blended = lower + ops.expand_dims(upper_weight, -1) * (upper - lower)
            rows = ops.concatenate([blended, rest], axis=1)
        fields = self._pool(rows, features)
        return self._piecewise_linear(fields, features) if self._ple_fields and not p else fields

    def _upper_knots(self, lower_ids, features: Mapping[str, Any]):
        """Table rows of the interpolated fields' next buckets ``[batch, P]``, and their weights.

        ``lower_ids``: their own rows, the leading columns of ``_univalent_ids``
        (static rank; not the stack with multivalent ids, whose rank a serving
        graph can leave unknown). The weight is the
        position in the bucket, 0 where there is no next value bucket (the
        last one, or the missing bucket): the weights of
        ``interpolation_weights`` as a pair of gathered rows instead of a
        ``[batch, num_ids]`` matrix. Why: the matrix form multiplies every row
        of each numeric field's table for every example and sends them all a
        gradient (and so a lazy-Adam update): in train-step CPU per epoch the
        row pair costs little more than one id per field, the matrix far more,
        for the same validation AUC.
        """
        f = [self.fields[j] for j in self._ple_fields]
        offsets = [self.offsets[j] for j in self._ple_fields]
        position = ops.stack([ops.reshape(ops.cast(features[x.position], "float32"), (-1,)) for x in f], axis=1)
        end = ops.array([o + x.num_ids - (x.missing_id is not None) for o, x in zip(offsets, f)], "int64")
        missing = ops.array([-1 if x.missing_id is None else o + x.missing_id for o, x in zip(offsets, f)], "int64")
        has_next = (lower_ids + 1 < end) & (lower_ids != missing)
        return ops.where(has_next, lower_ids + 1, lower_ids), ops.where(has_next, position, 0.0)

    def _piecewise_linear(self, fields, features: Mapping[str, Any]):
        """Replaces the looked-up row of each piecewise field by ``weights @ field rows`` (``ple``).

        The rows are gathered (not sliced) so their gradient stays row-sparse.
        """
        columns = [fields[:, j] for j in range(self.num_fields)]
        for j in self._ple_fields:
            f = self.fields[j]
            table = ops.take(self.embeddings, ops.arange(self.offsets[j], self.offsets[j] + f.num_ids), axis=0)
            weights = PIECEWISE_WEIGHTS[self.piecewise](features[f.name], features[f.position], f.num_ids,
                                                        f.missing_id)
            columns[j] = ops.matmul(weights, ops.cast(table, weights.dtype))
        return ops.stack(columns, axis=1)

    def _pool(self, rows, features: Mapping[str, Any]):
        """Per-position rows -> one vector per field (mean over multivalent ids)."""
        start = len(self._univalent)
        if not self._multivalent and self.global_index is None:  # no slice: its gradient is not free
            fields = rows if self._perm is None else ops.take(rows, self._perm, axis=1)
            return ops.reshape(fields, (-1, self.num_fields, self.dim))
        out = [rows[:, :start]] if start else []
        for i in self._multivalent:
            ids = features[self.fields[i].name]
            length = ops.shape(ids)[1]
            count = ops.sum(ops.cast(ids >= 0, rows.dtype), axis=1, keepdims=True)
            pooled = ops.sum(rows[:, start:start + length], axis=1) / ops.maximum(count, 1.0)
            out.append(ops.expand_dims(pooled, 1))
            start = start + length
        if self.global_index is not None:
            values = ops.cast(features[self.global_index.value_key], rows.dtype)
            out.append(rows[:, start:] * ops.expand_dims(values, -1))
        fields = out[0] if len(out) == 1 else ops.concatenate(out, axis=1)
        if self._perm is not None:
            fields = ops.take(fields, self._perm, axis=1)
        return ops.reshape(fields, (-1, self.num_fields, self.dim))

    def get_config(self) -> dict[str, Any]:
        return {
            **super().get_config(),
            "fields": [dataclasses.asdict(f) for f in self.fields],
            "dim": self.dim,
            "global_index": dataclasses.asdict(self.global_index) if self.global_index else None,
            "l2": self.l2,
            "embeddings_initializer": keras.initializers.serialize(self.embeddings_initializer),
            "piecewise": self.piecewise,
            "ordered": self.ordered,
        }


@register
class Linear(keras.layers.Layer):
    """First-order term: a scalar weight per id, summed over fields, + w.dense + b.

    It is LR on its own and the wide part of Wide&Deep / first order of DeepFM.
    The per-id weights are a 1-wide ``FieldEmbedding`` (one table, one gather),
    which also covers the ``wide_only`` crosses and the global feat_index
    (weights times feat_value). Zero-initialised: the model starts at logit 0.
    With ``piecewise`` a bucketized numeric's weight is piecewise-linear in its
    value, a GAM-style shape function instead of a step function.
    """

    def __init__(
        self,
        fields: Sequence[SparseFeature | Mapping[str, Any]] = (),
        dense_names: Sequence[str] = (),
        global_index: GlobalIndex | Mapping[str, Any] | None = None,
        l2: float = 0.0,
        piecewise: str | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.dense_names = tuple(dense_names)
        self.id_weights = (
            FieldEmbedding(fields, dim=1, global_index=global_index, l2=l2, piecewise=piecewise,
                           embeddings_initializer="zeros", ordered=False, name="id_weights")
            if fields or global_index else None
        )
        self.dense_weights = (
            keras.layers.Dense(1, use_bias=False, kernel_initializer="zeros", name="dense_weights")
            if self.dense_names else None
        )

    def build(self, input_shape: Any = None) -> None:
        self.bias = self.add_weight(shape=(1,), initializer="zeros", name="bias")

    def call(self, features: Mapping[str, Any], training: bool = False):
        terms = []
        if self.id_weights is not None:
            terms.append(ops.sum(self.id_weights(features, training=training), axis=1))
        if self.dense_weights is not None:
            terms.append(self.dense_weights(stack_dense(features, self.dense_names)))
        if not terms:
            raise ValueError("Linear needs sparse fields, a global index or dense features")
        return sum(terms[1:], terms[0]) + self.bias

    def get_config(self) -> dict[str, Any]:
        ids = self.id_weights
        return {
            **super().get_config(),
            "fields": [dataclasses.asdict(f) for f in ids.fields] if ids else [],
            "dense_names": list(self.dense_names),
            "global_index": dataclasses.asdict(ids.global_index) if ids and ids.global_index else None,
            "l2": ids.l2 if ids else 0.0,
            "piecewise": ids.piecewise if ids else None,
        }


@register
class FMSecondOrder(keras.layers.Layer):
    """FM pairwise term ``sum_{i<j} <v_i, v_j>`` in O(fields * dim).

    Uses ``0.5 * sum_k((sum_i v_ik)^2 - sum_i v_ik^2)`` instead of the explicit
    O(fields^2) pair loop. Input ``[batch, fields, dim]`` -> ``[batch, 1]``.
    """

    def call(self, fields):
        square_of_sum = ops.square(ops.sum(fields, axis=1))
        sum_of_squares = ops.sum(ops.square(fields), axis=1)
        return 0.5 * ops.sum(square_of_sum - sum_of_squares, axis=1, keepdims=True)


@register
class DenseBlock(keras.layers.Layer):
    """Dense -> norm -> activation -> dropout: the plain DNN block, and f's body."""

    def __init__(self, units: int, activation: str = "relu", dropout: float = 0.0,
                 norm: str = "none", kernel_l2: float = 0.0, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.units, self.activation, self.dropout, self.norm, self.kernel_l2 = (
            units, activation, dropout, norm, kernel_l2)
        self.dense = keras.layers.Dense(units, kernel_regularizer=_l2(kernel_l2))
        self.norm_layer = make_norm(norm)
        self.activation_layer = make_activation(activation)
        self.dropout_layer = keras.layers.Dropout(dropout) if dropout > 0 else None

    def call(self, x, training: bool = False):
        x = self.dense(x)
        if self.norm_layer is not None:
            x = self.norm_layer(x, training=training)
        x = self.activation_layer(x)
        if self.dropout_layer is not None:
            x = self.dropout_layer(x, training=training)
        return x

    def get_config(self) -> dict[str, Any]:
        return {**super().get_config(), "units": self.units, "activation": self.activation,
                "dropout": self.dropout, "norm": self.norm, "kernel_l2": self.kernel_l2}


@register
class ResidualBlock(keras.layers.Layer):
    """Residual DNN block; deep CTR towers train more stably with a skip path.

    f(x) = Dense -> norm -> activation -> dropout (-> Dense), and ``mode``:

    - ``"additive"``: ``P(x) + f(x)``; f's last Dense is zero-initialised so the
      block is exactly the identity (when widths match) at step 0.
    - ``"gated"``: ``w * P(x) + beta * f(x)`` with learnable scalars, ``w=1`` and
      a small ``beta`` at init (ReZero-like: close to identity, but f learns
      from step 0 since its last Dense is not zero).
    - ``"concat"``: ``[f(x), x]`` without the last Dense (DenseNet-like; the
      width grows by ``units``).

    P is a bias-free linear projection when the input width differs from
    ``units``, else the identity.
    """

    MODES = ("additive", "gated", "concat")

    def __init__(self, units: int, mode: str = "additive", activation: str = "relu",
                 dropout: float = 0.0, norm: str = "none", kernel_l2: float = 0.0,
                 gate_init: float = 0.1, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        if mode not in self.MODES:
            raise ValueError(f"unknown residual mode {mode!r}; expected one of {self.MODES}")
        self.units, self.mode, self.kernel_l2, self.gate_init = units, mode, kernel_l2, gate_init
        self.body = DenseBlock(units, activation, dropout, norm, kernel_l2, name="body")
        self.out = None if mode == "concat" else keras.layers.Dense(
            units, kernel_initializer="zeros" if mode == "additive" else "glorot_uniform",
            kernel_regularizer=_l2(kernel_l2), name="out")
        self.projection = None

    def build(self, input_shape: Any) -> None:
        if self.mode != "concat" and input_shape[-1] != self.units:
            self.projection = keras.layers.Dense(
                self.units, use_bias=False, kernel_regularizer=_l2(self.kernel_l2), name="projection")
        if self.mode == "gated":
            self.w = self.add_weight(shape=(), initializer="ones", name="w")
            self.beta = self.add_weight(
                shape=(), initializer=keras.initializers.Constant(self.gate_init), name="beta")

    def call(self, x, training: bool = False):
        h = self.body(x, training=training)
        if self.mode == "concat":
            return ops.concatenate([h, x], axis=-1)
        h = self.out(h)
        skip = x if self.projection is None else self.projection(x)
        if self.mode == "additive":
            return skip + h
        return self.w * skip + self.beta * h

    def get_config(self) -> dict[str, Any]:
        body = self.body
        return {**super().get_config(), "units": self.units, "mode": self.mode,
                "activation": body.activation, "dropout": body.dropout, "norm": body.norm,
                "kernel_l2": self.kernel_l2, "gate_init": self.gate_init}


@register
class DNN(keras.layers.Layer):
    """Stack of ``DenseBlock`` (``residual="none"``) or ``ResidualBlock`` layers."""

    def __init__(self, hidden_units: Sequence[int], residual: str = "none",
                 activation: str = "relu", dropout: float = 0.0, norm: str = "none",
                 kernel_l2: float = 0.0, gate_init: float = 0.1, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.hidden_units, self.residual = tuple(hidden_units), residual
        self.block_options = dict(activation=activation, dropout=dropout, norm=norm,
                                  kernel_l2=kernel_l2)
        self.gate_init = gate_init
        self.blocks = [
            DenseBlock(units, **self.block_options, name=f"block_{i}") if residual == "none"
            else ResidualBlock(units, mode=residual, gate_init=gate_init, **self.block_options,
                               name=f"block_{i}")
            for i, units in enumerate(self.hidden_units)
        ]

    def call(self, x, training: bool = False):
        for block in self.blocks:
            x = block(x, training=training)
        return x

    def get_config(self) -> dict[str, Any]:
        return {**super().get_config(), "hidden_units": list(self.hidden_units),
                "residual": self.residual, "gate_init": self.gate_init, **self.block_options}


@register
class Hadamard(keras.layers.Layer):
    """Elementwise product of two field groups' mean embeddings (e.g. user x item).

    An explicit multiplicative user-item signal that an MLP would otherwise
    need many units to approximate. ``[batch, fields, dim]`` -> ``[batch, dim]``.
    """

    def __init__(self, left: Sequence[int], right: Sequence[int], **kwargs: Any) -> None:
        super().__init__(**kwargs)
        if not left or not right:
            raise ValueError("Hadamard needs at least one field in each group")
        self.left, self.right = list(left), list(right)

    def call(self, fields):
        left = ops.mean(ops.take(fields, self.left, axis=1), axis=1)
        right = ops.mean(ops.take(fields, self.right, axis=1), axis=1)
        return left * right

    def get_config(self) -> dict[str, Any]:
        return {**super().get_config(), "left": self.left, "right": self.right}


@register
class CrossNetwork(keras.layers.Layer):
    """DCN-V2's cross network (Wang et al. 2021): ``x_{l+1} = x0 * (W_l x_l + b_l) + x_l``, ``num_layers`` times.

    Each layer multiplies the input ``x0`` elementwise by a linear map of the
    previous layer's output, so layer l holds feature crosses up to degree
    l + 1, explicitly and with a skip path. ``rank > 0`` factors each
    ``W_l = U_l V_l^T`` (``U, V``: ``[width, rank]``), the paper's low-rank
    option: ``2 * width * rank`` weights per layer instead of ``width^2``.
    Input and output ``[batch, width]``; the width must be static.
    """

    def __init__(self, num_layers: int = 3, rank: int = 0, kernel_l2: float = 0.0, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        if num_layers < 1 or rank < 0:
            raise ValueError(f"CrossNetwork needs num_layers >= 1 and rank >= 0, got {num_layers}, {rank}")
        self.num_layers, self.rank, self.kernel_l2 = num_layers, rank, kernel_l2

    def build(self, input_shape: Any) -> None:
        width = input_shape[-1]
        if width is None:
            raise ValueError("CrossNetwork needs a static input width")
        if self.rank >= width:
            raise OptionsError(f"cross_rank {self.rank} is not below the cross input width {width} (embedded fields x "
                               "embedding_dim [+ Hadamard] + dense values): use a smaller rank, or 0 (full rank)")
        self.kernels, self.biases = [], []
        for i in range(self.num_layers):
            if self.rank:
                factors = tuple(self.add_weight(shape=(width, self.rank), initializer="glorot_uniform",
                                                regularizer=_l2(self.kernel_l2), name=f"{side}_{i}")
                                for side in ("u", "v"))
                self.kernels.append(factors)
            else:
                self.kernels.append(self.add_weight(shape=(width, width), initializer="glorot_uniform",
                                                    regularizer=_l2(self.kernel_l2), name=f"kernel_{i}"))
            self.biases.append(self.add_weight(shape=(width,), initializer="zeros", name=f"bias_{i}"))

    def call(self, x0):
        x = x0
        for kernel, bias in zip(self.kernels, self.biases):
            if self.rank:  # rows: x W^T = (x V) U^T
                u, v = kernel
                wx = ops.matmul(ops.matmul(x, v), ops.transpose(u))
            else:  # rows: x W^T, with the kernel stored as W^T (Dense's convention)
                wx = ops.matmul(x, kernel)
            x = x0 * (wx + bias) + x
        return x

    def get_config(self) -> dict[str, Any]:
        return {**super().get_config(), "num_layers": self.num_layers, "rank": self.rank,
                "kernel_l2": self.kernel_l2}
