"""Building blocks and losses checked against explicit numpy computations."""
from __future__ import annotations

import itertools

import keras
import numpy as np
import pytest

from ctrflow.model.layers import DNN, FieldEmbedding, FMSecondOrder, Hadamard, Linear, ResidualBlock, make_activation
from ctrflow.model.losses import calibrate_downsampled, log_loss, pairwise_logistic_loss, rdrop_kl
from ctrflow.pipeline.layout import GlobalIndex, SparseFeature

RNG = np.random.default_rng(7)


def _sigmoid(z: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-z))


def _explicit_fm(v: np.ndarray) -> np.ndarray:
    """sum_{i<j} <v_i, v_j> per example, the textbook definition."""
    pairs = itertools.combinations(range(v.shape[1]), 2)
    return sum(np.sum(v[:, i] * v[:, j], axis=-1) for i, j in pairs)[:, None]


def _set_table(layer: FieldEmbedding, table: np.ndarray) -> None:
    layer.embeddings.assign(table.astype("float32"))


# ----------------------------------------------------------------------- FM


def test_fm_equals_explicit_pair_sum() -> None:
    v = RNG.normal(size=(4, 6, 5)).astype("float32")
    out = keras.ops.convert_to_numpy(FMSecondOrder()(v))
    assert out.shape == (4, 1)
    np.testing.assert_allclose(out, _explicit_fm(v.astype("float64")), rtol=1e-5, atol=1e-5)


def test_fm_on_global_layout_multiplies_feat_value() -> None:
    gi = GlobalIndex(num_ids=20, num_fields=4)
    layer = FieldEmbedding(global_index=gi, dim=3)
    features = {"feat_index": RNG.integers(0, 20, (5, 4)),
                "feat_value": RNG.uniform(0.1, 2.0, (5, 4)).astype("float32")}
    layer(features)
    table = RNG.normal(size=(20, 3))
    _set_table(layer, table)
    v = table[features["feat_index"]] * features["feat_value"][..., None]  # [5, 4, 3]
    emb = keras.ops.convert_to_numpy(layer(features))
    np.testing.assert_allclose(emb, v, rtol=1e-5, atol=1e-6)
    fm = keras.ops.convert_to_numpy(FMSecondOrder()(emb))
    np.testing.assert_allclose(fm, _explicit_fm(v), rtol=1e-5, atol=1e-5)


# ---------------------------------------------------------- FieldEmbedding


def test_field_embedding_offsets_hit_row_offset_plus_id() -> None:
    fields = [SparseFeature("a", 5), SparseFeature("b", 7), SparseFeature("c", 3)]
    layer = FieldEmbedding(fields, dim=2)
    features = {"a": np.array([0, 4, 2]), "b": np.array([6, 0, 3]), "c": np.array([1, 2, 0])}
    layer(features)
    assert layer.offsets == (0, 5, 12) and layer.num_rows == 15
    _set_table(layer, np.repeat(np.arange(15)[:, None], 2, axis=1))  # row r holds r
    out = keras.ops.convert_to_numpy(layer(features))
    assert out.shape == (3, 3, 2)
    for j, f in enumerate(fields):
        np.testing.assert_array_equal(out[:, j, 0], layer.offsets[j] + features[f.name])


def test_multivalent_mean_pooling_keeps_field_order() -> None:
    fields = [SparseFeature("a", 4), SparseFeature("tags", 6, multivalent=True),
              SparseFeature("b", 3), SparseFeature("more", 5, multivalent=True)]
    layer = FieldEmbedding(fields, dim=3)
    features = {
        "a": np.array([1, 3, 0]),
        "tags": np.array([[0, 5, -1], [-1, -1, -1], [2, 2, 4]]),  # second row: no ids
        "b": np.array([2, 0, 1]),
        "more": np.array([[4, -1], [1, 0], [-1, 3]]),
    }
    layer(features)
    table = RNG.normal(size=(layer.num_rows, 3))
    _set_table(layer, table)

    def pooled(name: str, offset: int) -> np.ndarray:
        ids = features[name]
        mask = (ids >= 0)[..., None]
        rows = table[np.where(ids >= 0, ids + offset, 0)] * mask
        return rows.sum(1) / np.maximum(mask.sum(1), 1)

    expected = np.stack([table[features["a"]], pooled("tags", 4),
                         table[features["b"] + 10], pooled("more", 13)], axis=1)
    out = keras.ops.convert_to_numpy(layer(features))
    np.testing.assert_allclose(out, expected, rtol=1e-5, atol=1e-6)
    np.testing.assert_array_equal(out[1, 1], 0.0)


def test_embedding_l2_is_on_looked_up_rows_only() -> None:
    fields = [SparseFeature("a", 50), SparseFeature("tags", 6, multivalent=True)]
    layer = FieldEmbedding(fields, dim=2, l2=0.1)
    features = {"a": np.array([3, 3]), "tags": np.array([[1, -1], [-1, -1]])}
    layer(features)
    table = RNG.normal(size=(56, 2))
    _set_table(layer, table)
    layer(features, training=True)
    rows = np.stack([table[3], table[3], table[51]])
    expected = 0.1 * np.sum(rows**2) / 2  # per example of the batch of 2
    np.testing.assert_allclose(keras.ops.convert_to_numpy(layer.losses[0]), expected, rtol=1e-5)
    layer(features, training=False)
    assert layer.losses == []


# ------------------------------------------------------------------ Linear


def test_linear_equals_numpy_sum_of_weights() -> None:
    fields = [SparseFeature("a", 4), SparseFeature("tags", 5, multivalent=True),
              SparseFeature("cross", 9, wide_only=True)]
    layer = Linear(fields, dense_names=["d1", "d2"])
    features = {"a": np.array([0, 3, 1]), "tags": np.array([[1, 4], [-1, -1], [2, -1]]),
                "cross": np.array([8, 0, 5]), "d1": np.array([0.5, -1.0, 2.0], "float32"),
                "d2": np.array([1.5, 0.0, -0.5], "float32")}
    out = keras.ops.convert_to_numpy(layer(features))
    np.testing.assert_array_equal(out, 0.0)  # zero init: logit 0
    w = RNG.normal(size=(18, 1))
    dense_w = RNG.normal(size=(2, 1))
    layer.id_weights.embeddings.assign(w.astype("float32"))
    layer.dense_weights.kernel.assign(dense_w.astype("float32"))
    layer.bias.assign(np.array([0.25], "float32"))
    tags = features["tags"]
    tag_mean = np.where(tags >= 0, w[np.maximum(tags, 0) + 4, 0], 0).sum(1) / np.maximum((tags >= 0).sum(1), 1)
    expected = (w[features["a"], 0] + tag_mean + w[features["cross"] + 9, 0]
                + features["d1"] * dense_w[0, 0] + features["d2"] * dense_w[1, 0] + 0.25)
    out = keras.ops.convert_to_numpy(layer(features))
    np.testing.assert_allclose(out[:, 0], expected, rtol=1e-5, atol=1e-6)


# --------------------------------------------------------- residual & DNN


@pytest.mark.parametrize("norm", ["none", "batch", "layer"])
def test_additive_block_is_identity_at_init(norm: str) -> None:
    x = RNG.normal(size=(6, 8)).astype("float32")
    block = ResidualBlock(8, mode="additive", dropout=0.3, norm=norm, activation="gelu")
    np.testing.assert_array_equal(keras.ops.convert_to_numpy(block(x)), x)


def test_gated_block_matches_formula_with_projection() -> None:
    x = RNG.normal(size=(5, 4)).astype("float32")
    block = ResidualBlock(6, mode="gated", activation="tanh", gate_init=0.3)
    out = keras.ops.convert_to_numpy(block(x))
    assert block.projection is not None

    def np_(v: keras.Variable) -> np.ndarray:
        return v.numpy().astype("float64")

    h = np.tanh(x @ np_(block.body.dense.kernel) + np_(block.body.dense.bias))
    h = h @ np_(block.out.kernel) + np_(block.out.bias)
    skip = x @ np_(block.projection.kernel)
    assert float(np_(block.w)) == 1.0
    np.testing.assert_allclose(out, np_(block.w) * skip + 0.3 * h, rtol=1e-5, atol=1e-5)


def test_concat_block_appends_input() -> None:
    x = RNG.normal(size=(3, 5)).astype("float32")
    out = keras.ops.convert_to_numpy(ResidualBlock(7, mode="concat")(x))
    assert out.shape == (3, 12)
    np.testing.assert_array_equal(out[:, 7:], x)


@pytest.mark.parametrize("residual", ["none", "additive", "gated", "concat"])
def test_dnn_stacks_blocks(residual: str) -> None:
    dnn = DNN([8, 4], residual=residual, dropout=0.1, norm="batch", kernel_l2=1e-3)
    out = dnn(RNG.normal(size=(3, 10)).astype("float32"), training=True)
    width = {"concat": 4 + 8 + 10}.get(residual, 4)
    assert out.shape == (3, width)
    assert len(dnn.losses) > 0  # kernel L2


@pytest.mark.parametrize("name", ["relu", "gelu", "leaky_relu", "prelu", "tanh", "sigmoid"])
def test_activations_by_name(name: str) -> None:
    layer = make_activation(name)
    x = np.array([[-2.0, 0.5]], "float32")
    out = keras.ops.convert_to_numpy(layer(x))
    assert out.shape == x.shape and np.all(np.isfinite(out))
    assert (len(layer.trainable_weights) > 0) == (name == "prelu")


def test_hadamard_is_product_of_group_means() -> None:
    v = RNG.normal(size=(2, 5, 3)).astype("float32")
    out = keras.ops.convert_to_numpy(Hadamard([0, 2], [1, 3, 4])(v))
    np.testing.assert_allclose(out, v[:, [0, 2]].mean(1) * v[:, [1, 3, 4]].mean(1), rtol=1e-5)


# ------------------------------------------------------------------ losses


def test_rdrop_kl_symmetric_zero_and_equals_bernoulli_kl() -> None:
    a = RNG.normal(scale=3.0, size=(16, 1))
    b = RNG.normal(scale=3.0, size=(16, 1))
    p, q = _sigmoid(a), _sigmoid(b)

    def kl(p: np.ndarray, q: np.ndarray) -> np.ndarray:
        return p * np.log(p / q) + (1 - p) * np.log((1 - p) / (1 - q))

    expected = np.mean(0.5 * (kl(p, q) + kl(q, p)))
    ab = float(rdrop_kl(a.astype("float32"), b.astype("float32")))
    ba = float(rdrop_kl(b.astype("float32"), a.astype("float32")))
    np.testing.assert_allclose(ab, expected, rtol=1e-4)
    assert ab == ba
    assert float(rdrop_kl(a.astype("float32"), a.astype("float32"))) == 0.0


def test_pairwise_logistic_loss_matches_numpy() -> None:
    s_pos = RNG.normal(size=(8, 1))
    s_neg = RNG.normal(size=(8, 1))
    expected = np.mean(-np.log(_sigmoid(s_pos - s_neg)))
    out = float(pairwise_logistic_loss(s_pos.astype("float32"), s_neg.astype("float32")))
    np.testing.assert_allclose(out, expected, rtol=1e-5)
    assert np.isfinite(float(pairwise_logistic_loss(np.float32([[-100.0]]), np.float32([[100.0]]))))


def test_log_loss_weighted_and_stable() -> None:
    z = RNG.normal(size=(10, 1))
    y = (RNG.random((10, 1)) < 0.5).astype("float64")
    w = RNG.uniform(0.5, 2.0, (10, 1))
    p = _sigmoid(z)
    expected = np.mean(w * -(y * np.log(p) + (1 - y) * np.log(1 - p)))
    out = float(log_loss(y.astype("float32"), z.astype("float32"), w.astype("float32")))
    np.testing.assert_allclose(out, expected, rtol=1e-5)
    np.testing.assert_allclose(float(log_loss(np.float32([[1.0]]), np.float32([[-200.0]]))), 200.0)


def test_calibrate_downsampled() -> None:
    p = np.array([0.01, 0.2, 0.5, 0.9])
    w = 0.1
    out = np.asarray(calibrate_downsampled(p, w))
    np.testing.assert_allclose(out, p / (p + (1 - p) / w))
    # Odds shrink by exactly the keep rate.
    np.testing.assert_allclose(out / (1 - out), w * p / (1 - p))
    np.testing.assert_allclose(np.asarray(calibrate_downsampled(p, 1.0)), p)
