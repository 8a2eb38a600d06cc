"""Piecewise-linear encoding of bucketized numerics: transform positions, the encoding, export."""
import os

import numpy as np
import pandas as pd
import pytest
import tensorflow as tf

from tests.test_score_e2e import _raw_inputs

pytestmark = pytest.mark.slow


def _numpy_edges(quantiles: np.ndarray) -> np.ndarray:
    """Independent re-statement of the point-mass rule: a repeated quantile v -> [v, next float after v]."""
    out = []
    values, counts = np.unique(quantiles.astype(np.float32), return_counts=True)
    for v, n in zip(values, counts):
        out.append(v)
        if n > 1:
            out.append(np.finfo(np.float32).tiny if v == 0 else np.nextafter(v, np.float32(np.inf)))
    return np.sort(np.array(out, np.float32))


def _numpy_position(x: np.ndarray, edges: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(bucket id, position in bucket) with the outer buckets as wide as their neighbours."""
    ids = np.searchsorted(edges, x, side="right")
    lo = np.concatenate([[edges[0] - (edges[1] - edges[0])], edges])
    hi = np.concatenate([edges, [edges[-1] + (edges[-1] - edges[-2])]])
    span = hi[ids] - lo[ids]
    pos = np.where(span > 0, np.clip((x - lo[ids]) / np.where(span > 0, span, 1), 0, 1), 0)
    return ids, pos


def _transform(run, df: pd.DataFrame) -> dict[str, np.ndarray]:
    import tensorflow_transform as tft
    out = tft.TFTransformOutput(run["data"]).transform_features_layer()(_raw_inputs(df))
    return {k: v.numpy() for k, v in out.items()}


def test_positions_in_buckets_equal_numpy(clicks_run):
    from ctrflow.pipeline.prior import read_kept_boundaries
    from ctrflow.schemas import load_schema
    schema = load_schema(clicks_run["schema"])
    quantiles = read_kept_boundaries(clicks_run["data"], schema)  # the analyzer's output in the saved graph
    extreme = clicks_run["eval_df"].head(2).assign(age=[-1e4, 1e4], spend=[1e6, 1e6])  # beyond training range
    df = pd.concat([clicks_run["eval_df"], extreme], ignore_index=True)
    out = _transform(clicks_run, df)
    train_age = clicks_run["train_df"]["age"].to_numpy(np.float32)
    top = np.log1p(np.float32(clicks_run["train_df"]["spend"].max()))
    # beyond the training range: the training extreme's bucket and position (values are clipped to it)
    age = np.clip(df["age"].to_numpy(np.float32), np.nanmin(train_age), np.nanmax(train_age))
    present = ~np.isnan(age)
    ids, pos = _numpy_position(age[present], _numpy_edges(np.array(quantiles["age"])))
    np.testing.assert_array_equal(out["age"][present], ids)
    np.testing.assert_allclose(out["age__position"][present], pos, atol=1e-5)
    assert (out["age"][~present] == 8).all() and (out["age__position"][~present] == 0).all()
    assert 0.3 < pos.mean() < 0.7 and len(np.unique(pos.round(3))) > 100  # spread inside buckets
    # spend: signed log1p, 60% zeros (a point mass of its own)
    spend = np.minimum(np.log1p(df["spend"].to_numpy(np.float32)), top)  # spend >= 0 and has zeros
    edges = _numpy_edges(np.array(quantiles["spend"]))
    ids, pos = _numpy_position(spend, edges)
    np.testing.assert_array_equal(out["spend"], ids)
    np.testing.assert_allclose(out["spend__position"], pos, atol=1e-5)
    assert (out["spend__position"][spend == 0] == 0).all()


def _numpy_ple(ids: np.ndarray, pos: np.ndarray, n: int, missing_id: int | None) -> np.ndarray:
    out = np.zeros((len(ids), n), np.float32)
    for r, (i, p) in enumerate(zip(ids, pos)):
        if i == missing_id:
            out[r, i] = 1.0
        else:
            out[r, :i] = 1.0
            out[r, i] = p
    return out


def _numpy_interpolate(ids: np.ndarray, pos: np.ndarray, n: int, missing_id: int | None) -> np.ndarray:
    out = np.zeros((len(ids), n), np.float32)
    last_value_id = n - 1 - (missing_id is not None)
    for r, (i, p) in enumerate(zip(ids, pos)):
        p = 0.0 if i == missing_id or i == last_value_id else p  # no next knot: the bucket's own row
        out[r, i] = 1 - p
        if p:
            out[r, i + 1] = p
    return out


NUMPY_WEIGHTS = {"ple": _numpy_ple, "interpolate": _numpy_interpolate}


def test_piecewise_weights_match_numpy():
    from ctrflow.model.layers import interpolation_weights, ple_weights
    ids, pos = np.array([0, 2, 4, 3, 5, 1]), np.array([0.25, 0.5, 1.0, 0.0, 0.0, 0.75], np.float32)
    got = ple_weights(tf.constant(ids), tf.constant(pos), 6, missing_id=5).numpy()
    np.testing.assert_array_equal(got, _numpy_ple(ids, pos, 6, 5))
    np.testing.assert_array_equal(got[1], [1, 1, 0.5, 0, 0, 0])
    for missing in (5, None):
        got = interpolation_weights(tf.constant(ids), tf.constant(pos), 6, missing_id=missing).numpy()
        np.testing.assert_allclose(got, _numpy_interpolate(ids, pos, 6, missing), atol=1e-7)
    np.testing.assert_array_equal(got[[1, 5]], [[0, 0, 0.5, 0.5, 0, 0], [0, 0.25, 0.75, 0, 0, 0]])


@pytest.mark.parametrize("piecewise", ["interpolate", "ple"])
def test_embedding_and_linear_are_piecewise_in_the_field_rows(clicks_run, piecewise):
    """Through the real layout and transform: FieldEmbedding/Linear rows of numerics = weights @ rows."""
    from ctrflow.model.layers import FieldEmbedding, Linear
    from ctrflow.pipeline.layout import FeatureLayout
    layout = FeatureLayout.from_json(open(os.path.join(clicks_run["data"], "layout.json")).read())
    fields = [f for f in layout.sparse if not f.wide_only]
    assert [(f.name, f.position, f.missing_id) for f in fields if f.position] == [
        ("age", "age__position", 8), ("spend", "spend__position", 5)]
    df = clicks_run["eval_df"].head(50)
    out = _transform(clicks_run, df)
    features = {k: tf.constant(v) for k, v in out.items()}
    weights = NUMPY_WEIGHTS[piecewise]
    emb = FieldEmbedding(fields, dim=3, piecewise=piecewise)
    emb(features)
    table = np.random.default_rng(0).normal(size=emb.embeddings.shape).astype(np.float32)
    emb.embeddings.assign(table)
    got = emb(features).numpy()
    for j, f in enumerate(fields):
        rows = table[emb.offsets[j]:emb.offsets[j] + f.num_ids]
        if f.position:
            expected = weights(out[f.name], out[f.position], f.num_ids, f.missing_id) @ rows
        else:
            expected = rows[out[f.name]]
        np.testing.assert_allclose(got[:, j], expected, rtol=1e-5, atol=1e-5)
    linear = Linear(fields, piecewise=piecewise)
    linear(features)
    w = np.random.default_rng(1).normal(size=linear.id_weights.embeddings.shape).astype(np.float32)
    linear.id_weights.embeddings.assign(w)
    expected = sum((weights(out[f.name], out[f.position], f.num_ids, f.missing_id) @ w[o:o + f.num_ids]
                    if f.position else w[o + out[f.name]]) for f, o in zip(fields, linear.id_weights.offsets))
    np.testing.assert_allclose(linear(features).numpy(), expected, rtol=1e-5, atol=1e-5)


def test_ple_model_export_scores_raw_rows_like_the_keras_model(clicks_run):
    """The exported SavedModel (raw text in) = the in-process Keras model on the transform's output."""
    import tensorflow_transform as tft

    from ctrflow.model.export import load
    from ctrflow.model.inputs import model_features
    from ctrflow.model.models import build_model
    from ctrflow.model.warm_start import previous_config, weights_file
    from ctrflow.pipeline.layout import FeatureLayout
    config = previous_config(clicks_run["model"])
    assert config.numeric_encoding != "bucket"  # the default is piecewise-linear
    layout = FeatureLayout.from_json(open(os.path.join(clicks_run["data"], "layout.json")).read())
    model = build_model(layout, config)
    model.load_weights(weights_file(clicks_run["model"]))
    assert model.linear.id_weights._ple_fields and model.embedding._ple_fields
    df = clicks_run["eval_df"].head(64).copy()
    moved = df.copy()  # each age moved a little: same bucket mostly, a different position
    moved["age"] = moved["age"] + 0.3

    def keras_scores(frame):
        transformed = tft.TFTransformOutput(clicks_run["data"]).transform_features_layer()(_raw_inputs(frame))
        return model.probabilities(model_features(transformed, layout)).numpy().reshape(-1)

    text = {c: tf.constant(np.array(["NA" if pd.isna(v) else str(v) for v in df[c]], object))
            for c in ("age", "spend", "city", "device", "tag")}
    exported = load(clicks_run["model"]).signature("serving_default")(**text)["score"].numpy()
    np.testing.assert_allclose(exported, keras_scores(df), atol=1e-6)
    same_bucket = _transform(clicks_run, df)["age"] == _transform(clicks_run, moved)["age"]
    changed = np.abs(keras_scores(moved) - keras_scores(df)) > 1e-7
    assert same_bucket.sum() > 40 and changed[same_bucket & df["age"].notna().to_numpy()].all()


def test_warm_start_refuses_mixing_increment_rows_with_value_rows():
    from ctrflow.model.config import ModelConfig
    from ctrflow.model.warm_start import IncompatibleModelError, check_compatible
    from ctrflow.pipeline.layout import FeatureLayout, SparseFeature
    old_data = FeatureLayout(sparse=(SparseFeature("age", 5),), dense=(), label="y")  # before positions
    new_data = FeatureLayout(sparse=(SparseFeature("age", 5, position="age__position", missing_id=4),), dense=(),
                             label="y")
    cfg = {e: ModelConfig(numeric_encoding=e) for e in ("interpolate", "ple", "bucket")}
    for old, new in [("bucket", "interpolate"), ("interpolate", "bucket"), ("ple", "ple")]:
        check_compatible(new_data, new_data, cfg[old], cfg[new], "m")  # rows mean the same: fine
    check_compatible(old_data, new_data, cfg["ple"], cfg["interpolate"], "m")  # old data: bucket rows
    for old, new in [("ple", "interpolate"), ("bucket", "ple")]:
        with pytest.raises(IncompatibleModelError, match="numeric encoding"):
            check_compatible(new_data, new_data, cfg[old], cfg[new], "m")
    with pytest.raises(IncompatibleModelError, match="numeric encoding bucket != ple"):
        check_compatible(old_data, new_data, cfg["ple"], cfg["ple"], "m")


@pytest.mark.parametrize("model,wide", [("wide_deep", "ftrl"), ("deepfm", None), ("lr", None)])
def test_every_model_trains_the_rows_of_a_piecewise_field(model, wide):
    """One step moves the rows around each value's bucket (sparse optimisers, FTRL wide part included)."""
    import keras

    from ctrflow.model.config import ModelConfig
    from ctrflow.model.models import build_model, compile_model
    from ctrflow.pipeline.layout import FeatureLayout, SparseFeature
    layout = FeatureLayout(sparse=(SparseFeature("age", 6, position="age__position", missing_id=5),
                                   SparseFeature("city", 4)), dense=(), label="y")
    config = ModelConfig(model=model, wide_optimizer=wide, embedding_dim=4, hidden_units=(8,))
    keras.utils.set_random_seed(0)
    m = compile_model(build_model(layout, config), config)
    x = {"age": np.array([1, 1, 5]), "age__position": np.array([0.5, 0.25, 0.0], np.float32),
         "city": np.array([0, 1, 2])}
    before = m.linear.id_weights.embeddings.numpy().copy()
    m.train_on_batch(x, np.array([1.0, 0.0, 1.0], np.float32))
    moved = np.abs(m.linear.id_weights.embeddings.numpy() - before).reshape(-1) > 0
    # age rows 1, 2 (bucket 1 and its upper knot) and 5 (missing), city rows 0-2 (offset 6); not age 0/3/4, city 3
    np.testing.assert_array_equal(np.flatnonzero(moved), [1, 2, 5, 6, 7, 8])
