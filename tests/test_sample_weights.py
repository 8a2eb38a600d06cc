"""Sample weights from the schema (``role: weight``): loader rules, rejected rows, weighted losses, metrics,
calibration, and one small preprocess + train whose metrics.json is recomputed here with numpy."""
import itertools
import json
import os

import numpy as np
import pyarrow as pa
import pytest

from ctrflow.schemas import SchemaError, loads_schema
from tests.conftest import CLICKS_SCHEMA, make_clicks, write_csv

BASE = """
name: t
format: {type: csv, header: true}
columns:
  - {name: x, role: numeric, bucketize: {num_buckets: 4}}
  - {name: c, role: categorical, vocabulary: {top_k: 10}}
  - {name: w, role: weight}
  - {name: y, role: label, positive: ["1"], negative: ["0"]}
"""


# ------------------------------------------------------------------ loader


def test_weight_column_is_numeric_not_a_feature():
    s = loads_schema(BASE, "t.yaml")
    assert s.weight.name == "w" and s.weight.dtype == "float64"
    assert [c.name for c in s.features] == ["x", "c"] and s.weight not in s.keys
    assert loads_schema(BASE.replace("role: weight", "role: ignored"), "t.yaml").weight is None


@pytest.mark.parametrize("text, expected", [
    (BASE + "  - {name: w2, role: weight}\n", "at most one weight column, got ['w', 'w2']"),
    (BASE.replace("{name: w, role: weight}", "{name: w, role: weight, dtype: string}"),
     "column 'w': a weight column is always numeric"),
    (BASE.replace("{name: w, role: weight}", "{name: w, role: weight, group: user}"),
     "column 'w': a weight column is not a feature"),
    (BASE.replace("{name: w, role: weight}", "{name: w, role: weight, scale: zscore}"),
     "column 'w': unknown key(s) ['scale'] in a weight column"),
    (BASE + "crosses: [{columns: [c, w], hash_buckets: 10}]\n", "column 'w' has role weight; only features"),
    (BASE + "pairwise: {group: w}\n", "group must name a categorical column, got 'w'"),
])
def test_weight_column_rules(text, expected):
    with pytest.raises(SchemaError) as err:
        loads_schema(text, "bad.yaml")
    assert expected in str(err.value)


# ------------------------------------------------------------------ parsing


def _parse(table: pa.Table, schema_text: str = BASE, with_label: bool = True):
    from ctrflow.pipeline.parsing import BatchParser

    return BatchParser(loads_schema(schema_text, "t.yaml"), with_label=with_label, keys=False).parse(table, "f.csv")


def test_parser_rejects_missing_negative_and_non_finite_weights_with_reasons():
    weights = ["1", "", "nan", "-2", "0", "2.5", "abc", "inf", " 3 ", "-0"]
    n = len(weights)
    table = pa.table({"x": ["1"] * n, "c": ["a"] * n, "w": weights, "y": ["1", "0"] * (n // 2)})
    result = _parse(table)
    assert result.batch.column("w").to_pylist() == [1.0, 0.0, 2.5, 3.0, -0.0]  # a weight of 0 is kept
    assert result.batch.schema.field("w").type == pa.float32()
    assert result.batch.num_rows + len(result.rejected) == n  # no row lost
    assert [(r.row, r.reason) for r in result.rejected] == [
        ("1,a,,0", "column 'w': weight is missing"),
        ("1,a,nan,1", "column 'w': 'nan' is not a finite number"),
        ("1,a,-2,0", "column 'w': weight '-2' is negative"),
        ("1,a,abc,1", "column 'w': cannot parse 'abc' as a number"),
        ("1,a,inf,0", "column 'w': 'inf' is not a finite number"),
    ]


def test_parser_typed_weights_nan_and_null_are_missing():
    """Parquet/BigQuery: a typed NaN or null weight is missing; a negative one is rejected."""
    table = pa.table({"x": [1.0] * 5, "c": ["a"] * 5, "w": pa.array([2.0, float("nan"), None, -1.0, 0.0]),
                      "y": ["1"] * 5})
    result = _parse(table)
    assert result.batch.column("w").to_pylist() == [2.0, 0.0]
    assert [r.reason for r in result.rejected] == ["column 'w': weight is missing", "column 'w': weight is missing",
                                                   "column 'w': weight -1.0 is negative"]  # typed: no quotes


def test_scoring_reads_no_weight():
    from ctrflow.pipeline.parsing import BatchParser

    parser = BatchParser(loads_schema(BASE, "t.yaml"), with_label=False, keys=True)
    assert parser.required_columns == ["x", "c"]
    result = parser.parse(pa.table({"x": ["1"], "c": ["a"]}), "f.csv")
    assert result.batch.num_rows == 1 and not result.rejected


# ------------------------------------------------------------------ metrics


def _pair_auc(y, s, w):
    """Weighted AUC by explicit enumeration of (positive, negative) pairs."""
    num = den = 0.0
    for i, j in itertools.product(range(len(y)), repeat=2):
        if y[i] == 1 and y[j] == 0:
            pair = w[i] * w[j]
            num += pair * (1.0 if s[i] > s[j] else 0.5 if s[i] == s[j] else 0.0)
            den += pair
    return num / den


def test_weighted_auc_equals_pair_enumeration_and_row_duplication():
    from ctrflow.model import metrics as mt

    rng = np.random.default_rng(0)
    y = rng.integers(0, 2, 40)
    s = rng.integers(0, 8, 40) / 8.0  # many ties
    w = rng.uniform(0, 3, 40)
    w[:3] = 0.0
    assert mt.roc_auc(y, s, w) == pytest.approx(_pair_auc(y, s, w), abs=1e-12)
    k = rng.integers(0, 4, 40)  # integer weights = rows repeated
    assert mt.roc_auc(y, s, k) == pytest.approx(mt.roc_auc(np.repeat(y, k), np.repeat(s, k)), abs=1e-12)
    assert mt.roc_auc(y, s, np.ones(40)) == pytest.approx(mt.roc_auc(y, s), abs=1e-12)
    assert np.isnan(mt.roc_auc(y, s, np.where(y == 1, 0.0, 1.0)))  # positives weigh nothing


def test_weighted_log_loss_and_summary_equal_row_duplication():
    from ctrflow.model import metrics as mt

    rng = np.random.default_rng(1)
    y = rng.integers(0, 2, 50)
    p = rng.uniform(0.01, 0.99, 50)
    k = rng.integers(0, 4, 50)
    expected = -np.sum(k * (y * np.log(p) + (1 - y) * np.log(1 - p))) / k.sum()
    assert mt.log_loss(y, p, weights=k) == pytest.approx(expected, rel=1e-12)
    weighted, repeated = mt.summary(y, p, k), mt.summary(np.repeat(y, k), np.repeat(p, k))
    for key in ("auc", "logloss", "base_rate", "mean_prediction", "calibration"):
        assert weighted[key] == pytest.approx(repeated[key], rel=1e-12), key
    assert weighted["eval_rows"] == 50 and weighted["weighted"] is True and weighted["weight_sum"] == k.sum()
    assert "weighted" not in mt.summary(y, p)  # the unweighted report is unchanged


def test_weighted_platt_equals_row_duplication():
    from ctrflow.model.calibration import fit_platt

    rng = np.random.default_rng(2)
    z = rng.normal(0, 2, 300)
    y = (rng.random(300) < 1 / (1 + np.exp(-(0.5 * z - 1)))).astype(float)
    k = rng.integers(0, 4, 300)
    a, b = fit_platt(z, y, weights=k)
    assert (a, b) == pytest.approx(fit_platt(np.repeat(z, k), np.repeat(y, k)), abs=1e-8)
    p = 1 / (1 + np.exp(-(a * z + b)))
    assert np.sum(k * p) / k.sum() == pytest.approx(np.sum(k * y) / k.sum(), abs=1e-6)  # weighted calibration
    assert fit_platt(z, y, weights=np.ones(300)) == fit_platt(z, y)  # weight 1 is the unweighted fit, exactly


def test_weighted_losses_equal_row_duplication():
    from ctrflow.model.losses import log_loss, pairwise_logistic_loss, rdrop_kl, weighted_log_loss

    rng = np.random.default_rng(3)
    z = rng.normal(0, 1, (30, 1)).astype(np.float32)
    z2 = rng.normal(0, 1, (30, 1)).astype(np.float32)
    y = rng.integers(0, 2, (30, 1)).astype(np.float32)
    k = rng.integers(0, 4, (30, 1)).astype(np.float32)
    rep = np.repeat(np.arange(30), k[:, 0].astype(int))
    assert float(weighted_log_loss(y, z, k)) == pytest.approx(float(log_loss(y[rep], z[rep])), rel=1e-5)
    assert float(pairwise_logistic_loss(z, z2, k)) == pytest.approx(
        float(pairwise_logistic_loss(z[rep], z2[rep])), rel=1e-5)
    assert float(rdrop_kl(z, z2, k)) == pytest.approx(float(rdrop_kl(z[rep], z2[rep])), rel=1e-5)
    assert float(weighted_log_loss(y, z, np.zeros_like(k))) == 0.0  # a batch that weighs nothing: no NaN


@pytest.mark.parametrize("options", [dict(model="deepfm", optimizer="sgd"),
                                     dict(model="deepfm", optimizer="sgd", rdrop_alpha=5.0)])
def test_train_step_with_integer_weights_equals_duplicated_rows(options):
    """A weighted layout's train step: the loss and the update of its batch with rows repeated by weight."""
    import dataclasses

    from tests.test_models import LAYOUT, make_features, make_labels, model_for

    x, k = make_features(LAYOUT, 32), np.random.default_rng(4).integers(0, 4, 32).astype("float32")
    y = make_labels(x)
    rep = np.repeat(np.arange(32), k.astype(int))
    weighted = model_for(dataclasses.replace(LAYOUT, weight="w"), **options)
    plain = model_for(LAYOUT, **options)
    plain.set_weights(weighted.get_weights())
    loss_w = weighted.train_on_batch(x, y, sample_weight=k, return_dict=True)["loss"]
    loss_d = plain.train_on_batch({n: v[rep] for n, v in x.items()}, y[rep], return_dict=True)["loss"]
    assert loss_w == pytest.approx(loss_d, rel=1e-5)
    for a, b in zip(weighted.get_weights(), plain.get_weights()):
        np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-6)


def test_pairwise_step_weighs_a_pair_by_the_product_of_its_rows():
    import dataclasses

    from tests.test_models import LAYOUT, make_features, model_for

    pos, neg = make_features(LAYOUT, 16, seed=1), make_features(LAYOUT, 16, seed=2)
    k = np.random.default_rng(5).integers(0, 3, 16).astype("float32")  # the pairs' weights (products)
    rep = np.repeat(np.arange(16), k.astype(int))
    weighted = model_for(dataclasses.replace(LAYOUT, weight="w"), model="deepfm", optimizer="sgd", loss="pairwise")
    plain = model_for(LAYOUT, model="deepfm", optimizer="sgd", loss="pairwise")
    plain.set_weights(weighted.get_weights())
    loss_w = weighted.train_on_batch({"pos": pos, "neg": neg, "weight": k}, np.zeros(16, "float32"),
                                     return_dict=True)["loss"]
    loss_d = plain.train_on_batch({"pos": {n: v[rep] for n, v in pos.items()},
                                   "neg": {n: v[rep] for n, v in neg.items()}},
                                  np.zeros(rep.size, "float32"), return_dict=True)["loss"]
    assert loss_w == pytest.approx(loss_d, rel=1e-5)


def test_pairs_carry_the_product_of_their_weights(tmp_path):
    """``make_pair_dataset``: each pair's ``weight`` is w(pos) * w(neg) of the rows it was formed from."""
    import tensorflow as tf

    from ctrflow.model.inputs import make_pair_dataset
    from ctrflow.pipeline.layout import FeatureLayout, SparseFeature

    layout = FeatureLayout(sparse=(SparseFeature("a", 100),), dense=(), label="y", group_key="g", weight="w")
    rows = [(i, float(i % 2), i // 4, 1.0 + i) for i in range(16)]  # id, label, group, weight
    path = str(tmp_path / "part-0.tfrecord.gz")
    with tf.io.TFRecordWriter(path, options="GZIP") as f:
        for a, y, g, w in rows:
            f.write(tf.train.Example(features=tf.train.Features(feature={
                "a": tf.train.Feature(int64_list=tf.train.Int64List(value=[a])),
                "y": tf.train.Feature(float_list=tf.train.FloatList(value=[y])),
                "g": tf.train.Feature(int64_list=tf.train.Int64List(value=[g])),
                "w": tf.train.Feature(float_list=tf.train.FloatList(value=[w]))})).SerializeToString())
    spec = {"a": tf.io.FixedLenFeature([], tf.int64), "y": tf.io.FixedLenFeature([], tf.float32),
            "w": tf.io.FixedLenFeature([], tf.float32)}
    [batch] = list(make_pair_dataset(path, spec, layout, 64, seed=0, pair_window=16))
    pos, neg, w = batch["pos"]["a"].numpy(), batch["neg"]["a"].numpy(), batch["weight"].numpy()
    assert pos.size == 8 and np.all(pos // 4 == neg // 4)  # within a group
    np.testing.assert_array_equal(w, (1.0 + pos) * (1.0 + neg))


def test_unweighted_layout_json_is_unchanged():
    from ctrflow.pipeline.layout import FeatureLayout, SparseFeature

    plain = FeatureLayout(sparse=(SparseFeature("a", 3),), dense=(), label="y")
    assert "weight" not in json.loads(plain.to_json())
    weighted = FeatureLayout(sparse=(SparseFeature("a", 3),), dense=(), label="y", weight="w")
    assert FeatureLayout.from_json(weighted.to_json()) == weighted


# ------------------------------------------------------------------ end to end

WEIGHTED_SCHEMA = CLICKS_SCHEMA.replace(
    "  - {name: clicked, role: label", "  - {name: w, role: weight}\n  - {name: clicked, role: label")


def _weighted_clicks(n: int, seed: int, first_id: int = 0):
    df = make_clicks(n, seed=seed, first_id=first_id)
    df["w"] = np.random.default_rng(seed + 100).integers(0, 4, n).astype(float)
    return df


def _numpy_auc(y, p, w):
    """Weighted AUC as the weighted Mann-Whitney statistic over the pairs (quadratic; eval is small)."""
    pos, neg = y > 0.5, y < 0.5
    diff = p[pos][:, None] - p[neg][None, :]
    pair = w[pos][:, None] * w[neg][None, :]
    return float(np.sum(pair * ((diff > 0) + 0.5 * (diff == 0))) / pair.sum())


@pytest.mark.slow
def test_weighted_preprocess_and_train(tmp_path):
    import tensorflow as tf
    import tensorflow_transform as tft

    from ctrflow.beam_jobs.preprocess import job as preprocess
    from ctrflow.model import evaluate, train
    from ctrflow.model.evaluate import score_weighted
    from ctrflow.model.export import load_metadata
    from ctrflow.model.inputs import make_dataset, split_files
    from ctrflow.model.losses import log_loss, weighted_log_loss
    from ctrflow.model.models import build_model
    from ctrflow.model.warm_start import previous_config
    from ctrflow.pipeline import artifacts as af
    from ctrflow.pipeline.artifacts import live_dir

    (tmp_path / "s.yaml").write_text(WEIGHTED_SCHEMA)
    train_df = _weighted_clicks(3000, seed=1)
    train_df["w"] = train_df["w"].astype(object)
    train_df.loc[[100, 900], "w"] = None  # missing (written as NA, a null marker)
    train_df.loc[[500], "w"] = -1.0
    eval_df = _weighted_clicks(600, seed=2, first_id=10_000)
    data, model_dir = tmp_path / "data", tmp_path / "model"
    manifest = preprocess.run(["--schema", str(tmp_path / "s.yaml"), "--train",
                               write_csv(train_df, tmp_path / "train.csv"), "--eval",
                               write_csv(eval_df, tmp_path / "eval.csv"), "--output", str(data),
                               "--max-rejected-fraction", "0.01"])
    counts = manifest["splits"]["train"]
    assert (counts["input_rows"], counts["rejected_rows"]) == (3000, 3)
    out = live_dir(str(data))
    rejected = sorted(json.loads(line)["reason"] for f in os.listdir(os.path.join(out, "rejected"))
                      for line in open(os.path.join(out, "rejected", f)))
    assert rejected == ["column 'w': weight '-1.0' is negative"] + ["column 'w': weight is missing"] * 2
    metrics = train.run(["--data", str(data), "--output", str(model_dir), "--model", "deepfm", "--epochs", "1",
                         "--batch-size", "256", "--verbose", "0", "--ensemble", "1"])
    assert metrics["weighted"] is True and metrics["valid"]["weighted"] is True
    written = json.load(open(model_dir / af.METRICS))

    # the export's scores on the eval rows, with the weights preprocessing wrote beside them
    meta = load_metadata(str(model_dir / af.EXPORT))
    assert meta.layout.weight == "w"
    y, p, w = score_weighted(meta.path, split_files(out, "eval"), "clicked", "w", 4096)
    assert np.array_equal(np.sort(w), np.sort(eval_df["w"].to_numpy(np.float32)))
    assert written["auc"] == pytest.approx(_numpy_auc(y, p, w), abs=1e-5)
    assert abs(written["auc"] - _numpy_auc(y, p, np.ones_like(w))) > 1e-4  # the weights do change it
    q = np.clip(p.astype(np.float64), 1e-7, 1 - 1e-7)
    assert written["logloss"] == pytest.approx(-np.sum(w * (y * np.log(q) + (1 - y) * np.log(1 - q))) / w.sum(),
                                               rel=1e-5)
    assert written["base_rate"] == pytest.approx(np.sum(w * y) / w.sum(), rel=1e-6)
    assert written["weight_sum"] == pytest.approx(float(eval_df["w"].sum()))
    evaluated = evaluate.run(["--model", str(model_dir), "--data", str(data), "--output", str(tmp_path / "ev"),
                              "--importance-rows", "500"])
    assert evaluated["weighted"] is True
    assert (evaluated["auc"], evaluated["logloss"]) == pytest.approx((written["auc"], written["logloss"]), abs=1e-5)

    # integer weights: the training loss of a fixed batch is that of its rows duplicated by weight
    layout = meta.layout
    model = build_model(layout, previous_config(str(model_dir)))
    model.load_weights(af.ModelDirArtifacts(str(model_dir)).checkpoint())
    spec = tft.TFTransformOutput(out).transformed_feature_spec()
    x, yb, wb = next(iter(make_dataset(split_files(out, "train"), spec, layout, 64, shuffle=False)))
    rep = np.repeat(np.arange(64), wb.numpy().astype(int))
    x_dup = {k: tf.gather(v, rep) for k, v in x.items()}
    weighted = weighted_log_loss(tf.reshape(yb, [-1, 1]), model(x, training=False), tf.reshape(wb, [-1, 1]))
    duplicated = log_loss(tf.reshape(tf.gather(yb, rep), [-1, 1]), model(x_dup, training=False))
    assert float(weighted) == pytest.approx(float(duplicated), rel=1e-5)
