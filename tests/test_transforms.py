"""Every schema transform of a real preprocess run against an independent numpy/pandas computation."""
from __future__ import annotations

import collections
import glob
import os

import numpy as np
import pandas as pd
import pytest
import tensorflow as tf

pytestmark = pytest.mark.slow

SCHEMA = """
name: transforms
format: {type: csv, header: true, null_markers: ["", "NA"]}
columns:
  - {name: x, role: numeric, log1p: true, clip: [-2, 3], scale: minmax}
  - {name: y, role: numeric, bucketize: {num_buckets: 4, epsilon: 0.01}, missing: bucket, scale: zscore}
  - {name: z, role: numeric, clip: [0, 10], missing: 5.0, scale: zscore}
  - {name: c, role: categorical, vocabulary: {top_k: 5, num_oov_buckets: 3}}
  - {name: d, role: categorical, vocabulary: {frequency_threshold: 20}}
  - {name: h, role: categorical, hash: {buckets: 7}}
  - {name: tags, role: categorical, multivalent: {delimiter: "|"}, vocabulary: {frequency_threshold: 2}}
  - {name: label, role: label, positive: ["1"]}
crosses:
  - {columns: [c, y], hash_buckets: 11}
"""
MISSING = "__missing__"
# c: ties at 400 and 300 check TFT's order (count desc, then token desc); top_k 5 cuts inside a tie
C_COUNTS = {"a": 500, "b": 400, "c": 400, "d": 300, "e": 300, "f": 300, "g": 100, "h": 50}
C_MISSING = 150
D_COUNTS = {"p": 1200, "q": 800, "r": 20, "s": 19, "t": 461}  # r is exactly at the threshold, s under it
N = sum(C_COUNTS.values()) + C_MISSING


def make_table(seed: int = 0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    c = rng.permutation(np.repeat(list(C_COUNTS) + [None], list(C_COUNTS.values()) + [C_MISSING]))
    d = rng.permutation(np.repeat(list(D_COUNTS), list(D_COUNTS.values())))
    x = rng.normal(0, 20, N).round(3)
    x[rng.random(N) < 0.1] = np.nan
    y = rng.exponential(10, N)
    y[rng.random(N) < 0.1] = np.nan
    z = rng.normal(5, 6, N).round(2)
    z[rng.random(N) < 0.1] = np.nan
    vocab = ["red", "green", "blue", "rare1", "rare2"]
    tags = []
    for _ in range(N):
        k = rng.integers(0, 4)
        picked = list(rng.choice(vocab[:3], k)) if rng.random() < 0.99 else [vocab[3 + rng.integers(0, 2)]]
        tags.append(" | ".join(picked) if rng.random() < 0.5 else "||".join(picked))  # spaces, empty parts
    return pd.DataFrame({"x": x, "y": y, "z": z, "c": c, "d": d, "h": [f"h{v}" for v in rng.integers(0, 50, N)],
                         "tags": tags, "label": rng.integers(0, 2, N)})


def run_preprocess(root, schema_text: str, df: pd.DataFrame) -> str:
    from ctrflow.beam_jobs.preprocess import job as preprocess
    (root / "schema.yaml").write_text(schema_text)
    df.to_csv(root / "train.csv", index=False, na_rep="NA")
    out = root / "data"
    preprocess.run(["--schema", str(root / "schema.yaml"), "--train", str(root / "train.csv"), "--output", str(out)])
    from ctrflow.pipeline.artifacts import live_dir
    return live_dir(str(out))  # the published version folder


def raw_tensors(df: pd.DataFrame, numeric: list[str], categorical: list[str]) -> dict[str, tf.Tensor]:
    out = {c: tf.constant(df[c].to_numpy(np.float32)) for c in numeric}
    out.update({c: tf.constant(df[c].fillna("").astype(str).to_numpy(object)) for c in categorical})
    return out


def tft_vocab(order_counts: pd.Series, top_k=None, threshold=1) -> list[str]:
    """TFT's vocabulary order computed independently: count desc, token desc (bytes)."""
    kept = [(n, t) for t, n in order_counts.items() if n >= threshold]
    kept.sort(key=lambda p: (p[0], p[1].encode()), reverse=True)
    return [t for _, t in kept][:top_k]


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    import tensorflow_transform as tft
    df = make_table()
    data = run_preprocess(tmp_path_factory.mktemp("transforms"), SCHEMA, df)
    tft_out = tft.TFTransformOutput(data)
    raw = raw_tensors(df, ["x", "y", "z"], ["c", "d", "h", "tags"])
    got = tft_out.transform_features_layer()(raw)
    return {"df": df, "data": data, "tft": tft_out, "out": got}


def _np(t) -> np.ndarray:
    return t.to_tensor(-1).numpy() if isinstance(t, tf.RaggedTensor) else t.numpy()


def test_vocabulary_order_top_k_threshold(run):
    df = run["df"]
    c = [t.decode() for t in run["tft"].vocabulary_by_name("vocab_c")]
    counts = df["c"].fillna(MISSING).value_counts()
    assert c == tft_vocab(counts, top_k=5) == ["a", "c", "b", "f", "e"]
    d = [t.decode() for t in run["tft"].vocabulary_by_name("vocab_d")]
    assert d == tft_vocab(df["d"].value_counts(), threshold=20) == ["p", "q", "t", "r"]


def test_vocabulary_ids_and_oov_buckets(run):
    df, out = run["df"], run["out"]
    vocab = ["a", "c", "b", "f", "e"]
    tokens = df["c"].fillna(MISSING).to_numpy(object).astype(str)
    oov = 5 + tf.strings.to_hash_bucket_fast(tokens, 3).numpy()  # TFT's OOV bucket: fingerprint % num_oov
    expected = np.array([vocab.index(t) if t in vocab else o for t, o in zip(tokens, oov)])
    np.testing.assert_array_equal(_np(out["c"]), expected)
    d_vocab = ["p", "q", "t", "r"]
    np.testing.assert_array_equal(_np(out["d"]), [d_vocab.index(t) if t in d_vocab else 4 for t in df["d"]])


def test_hash_ids_are_exact(run):
    df = run["df"]
    expected = tf.strings.to_hash_bucket_fast(df["h"].to_numpy(object).astype(str), 7).numpy()
    np.testing.assert_array_equal(_np(run["out"]["h"]), expected)


def _tag_lists(df: pd.DataFrame) -> list[list[str]]:
    out = []
    for v in df["tags"].fillna(""):
        parts = [p.strip() for p in str(v).split("|") if p.strip()]
        out.append(parts or [MISSING])
    return out


def test_multivalent_ids_ragged(run):
    df, out = run["df"], run["out"]
    lists = _tag_lists(df)
    counts = pd.Series([t for row in lists for t in row]).value_counts()
    vocab = tft_vocab(counts, threshold=2)
    assert [t.decode() for t in run["tft"].vocabulary_by_name("vocab_tags")] == vocab
    ids = _np(out["tags"])
    width = max(map(len, lists))
    expected = np.full((len(lists), width), -1)
    for i, row in enumerate(lists):
        expected[i, : len(row)] = [vocab.index(t) if t in vocab else len(vocab) for t in row]
    np.testing.assert_array_equal(ids, expected)


def test_signed_log1p_clip_minmax(run):
    x = run["df"]["x"].to_numpy()
    v = np.clip(np.sign(x) * np.log1p(np.abs(x)), -2, 3)
    v = np.where(np.isnan(v), 0.0, v)  # missing -> default 0, on the transformed scale
    expected = (v - v.min()) / (v.max() - v.min())
    np.testing.assert_allclose(_np(run["out"]["x"]), expected, rtol=1e-5, atol=1e-5)


def test_clip_default_zscore(run):
    z = run["df"]["z"].to_numpy()
    v = np.where(np.isnan(z), 5.0, np.clip(z, 0, 10))
    np.testing.assert_allclose(_np(run["out"]["z"]), (v - v.mean()) / v.std(), rtol=1e-4, atol=1e-4)


def test_quantile_buckets_within_epsilon_in_rank(run):
    y = run["df"]["y"].to_numpy()
    ids = _np(run["out"]["y"])
    present = ~np.isnan(y)
    assert (ids[~present] == 4).all()  # missing: bucket -> the id after the 4 quantile buckets
    values, got = y[present], ids[present]
    rank = np.argsort(np.argsort(values)) / values.size  # rank of each value in [0, 1)
    # a value in bucket b has rank within epsilon (0.01, plus one row) of [b/4, (b+1)/4)
    slack = 0.01 + 1 / values.size
    assert np.all(rank >= got / 4 - slack) and np.all(rank < (got + 1) / 4 + slack)
    filled = np.where(present, y, 0.0)
    np.testing.assert_allclose(_np(run["out"]["y__scaled"]), (filled - filled.mean()) / filled.std(),
                               rtol=1e-4, atol=1e-4)


EXTREMES_SCHEMA = """
name: extremes
format: {type: csv, header: true, null_markers: [""]}
columns:
  - {name: g, role: numeric, bucketize: {num_buckets: 20}}
  - {name: s, role: numeric, bucketize: {num_buckets: 20}, scale: zscore}
  - {name: label, role: label, positive: ["1"]}
"""


def test_values_beyond_a_point_mass_at_the_training_extremes_bucket_like_the_extreme(tmp_path):
    """g: 40% exactly 0 and 40% exactly 100 (point masses at the training min and max, each repeated across
    quantiles, so each has a bucket of its own). Before the training-range clip, 1e6 went to the bucket above
    100 and -5 to the one below 0, buckets no training row reaches (their embedding rows stay at init)."""
    import tensorflow_transform as tft
    rng = np.random.default_rng(3)
    n = 2000
    g = np.where(rng.random(n) < 0.4, 0.0, np.where(rng.random(n) < 2 / 3, 100.0, rng.uniform(1, 99, n).round(1)))
    df = pd.DataFrame({"g": g, "s": rng.normal(0, 1, n).round(3), "label": rng.integers(0, 2, n)})
    layer = tft.TFTransformOutput(run_preprocess(tmp_path, EXTREMES_SCHEMA, df)).transform_features_layer()
    probe = np.array([-5.0, 0.0, 100.0, 1e6, 50.0], np.float32)
    s_probe = np.array([-1e9, df["s"].min(), df["s"].max(), 1e9, 0.0], np.float32)
    out = layer({"g": tf.constant(probe), "s": tf.constant(s_probe)})
    ids, pos = out["g"].numpy(), out["g__position"].numpy()
    assert (ids[0], pos[0]) == (ids[1], pos[1]) and (ids[3], pos[3]) == (ids[2], pos[2])
    trained = layer({"g": tf.constant(g.astype(np.float32)), "s": tf.constant(df["s"].to_numpy(np.float32))})
    seen = set(trained["g"].numpy().tolist())
    assert {ids[0], ids[3]} <= seen  # every probe lands in a bucket some training row reached
    s_ids, s_scaled = out["s"].numpy(), out["s__scaled"].numpy()
    assert s_ids[0] == s_ids[1] and s_ids[3] == s_ids[2] and s_scaled[0] == s_scaled[1] and s_scaled[3] == s_scaled[2]
    assert ids[1] < ids[4] < ids[2]


def test_cross_ids_are_exact(run):
    df, out = run["df"], run["out"]
    joined = [f"{c}\x1f{b}" for c, b in zip(df["c"].fillna(MISSING), _np(out["y"]))]
    np.testing.assert_array_equal(_np(out["c_x_y"]), tf.strings.to_hash_bucket_fast(joined, 11).numpy())


def test_layout_and_tfrecords_with_multivalent(run):
    from ctrflow.model.inputs import model_features
    from ctrflow.pipeline.layout import FeatureLayout
    layout = FeatureLayout.from_json(open(os.path.join(run["data"], "layout.json")).read())
    sizes = {f.name: (f.num_ids, f.multivalent) for f in layout.sparse}
    lists = _tag_lists(run["df"])
    tags_vocab = tft_vocab(pd.Series([t for row in lists for t in row]).value_counts(), threshold=2)
    assert sizes == {"y": (5, False), "c": (8, False), "d": (5, False), "h": (7, False),
                     "tags": (len(tags_vocab) + 1, True), "c_x_y": (11, False)}
    assert [f.name for f in layout.dense] == ["x", "y__scaled", "z"]
    files = glob.glob(os.path.join(run["data"], "train", "part-*.tfrecord.gz"))
    records = tf.data.TFRecordDataset(files, compression_type="GZIP").batch(100_000).get_single_element()
    parsed = tf.io.parse_example(records, run["tft"].transformed_feature_spec())
    features = model_features(parsed, layout)
    assert features["tags"].dtype == tf.int64 and features["tags"].shape.rank == 2
    written = sorted(zip(*(map(tuple, _np(features[k]).reshape(len(records), -1).tolist())
                           for k in ("c", "h", "tags"))))
    expected_tags = _np(run["out"]["tags"])
    expected = sorted(zip(*(map(tuple, a.reshape(N, -1).tolist()) for a in (
        _np(run["out"]["c"]), _np(run["out"]["h"]), expected_tags))))
    assert written == expected


def test_export_with_a_multivalent_field_and_interpolated_numerics(run, tmp_path):
    """The serving graph (TFT layer -> model) traces with a multivalent field beside a piecewise-linear
    numeric (regression: MovieLens's export failed, the upper knots were cut from the stacked ids, whose
    rank the serving graph leaves unknown) and scores raw rows as the Keras model scores their transform."""
    from ctrflow.model import export
    from ctrflow.model.config import ModelConfig
    from ctrflow.model.inputs import model_features
    from ctrflow.model.models import build_model
    from ctrflow.pipeline.layout import FeatureLayout
    from ctrflow.schemas.loader import loads_schema
    layout = FeatureLayout.from_json(open(os.path.join(run["data"], "layout.json")).read())
    config = ModelConfig(numeric_encoding="interpolate", embedding_dim=4, hidden_units=(8,))
    assert any(f.position for f in layout.sparse) and any(f.multivalent for f in layout.sparse)
    model = build_model(layout, config)
    export.export(model, run["tft"], loads_schema(SCHEMA), layout, str(tmp_path / "export"), schema_text=SCHEMA,
                  train_stats=None)
    loaded = tf.saved_model.load(str(tmp_path / "export"))
    df = run["df"].head(20)
    columns = ("x", "y", "z", "c", "d", "h", "tags")
    text = {c: tf.constant(df[c].fillna("").astype(str).to_numpy(object)) for c in columns}
    served = loaded.signatures["serving_default"](**text)["score"].numpy()
    transformed = run["tft"].transform_features_layer()(raw_tensors(df, ["x", "y", "z"], ["c", "d", "h", "tags"]))
    expected = model.probabilities(model_features(transformed, layout)).numpy().reshape(-1)
    np.testing.assert_allclose(served, expected, rtol=1e-5, atol=1e-6)


def test_one_lookup_table_per_vocabulary(run):
    """TFT's default OOV lookup is two table resources per vocabulary; ctrflow's is one (pipeline.vocab_lookup)."""
    from tensorflow.core.protobuf import saved_model_pb2

    saved = saved_model_pb2.SavedModel()
    with open(os.path.join(run["tft"].transform_savedmodel_dir, "saved_model.pb"), "rb") as f:
        saved.ParseFromString(f.read())
    graph = saved.meta_graphs[0]
    # the job writes a TF1 graph (beam_jobs.preprocess.job.transform_context): one table op and one initializer each
    tables = collections.Counter(n.op for n in graph.graph_def.node if "Table" in n.op)
    # lookups: one per column (c, d, tags), plus one of MISSING_TOKEN's id for each single-valued one (c, d)
    assert tables == {"HashTableV2": 3, "InitializeTableFromTextFileV2": 3, "LookupTableFindV2": 5,
                      "LookupTableSizeV2": 3}, tables


@pytest.mark.parametrize("num_oov_buckets", [1, 3])
def test_vocabulary_lookup_matches_static_vocabulary_table(tmp_path, num_oov_buckets):
    """Same ids as TensorFlow's StaticVocabularyTable (TFT's default), known and unseen tokens, dense and ragged."""
    from ctrflow.pipeline.vocab_lookup import oov_buckets, vocabulary_lookup

    vocab = tmp_path / "vocab.txt"
    vocab.write_text("a\nbb\nccc\n")
    tokens = tf.constant(["bb", "zz", "a", "", "ccc", "unseen", "q", "a7f3"])
    reference = tf.lookup.StaticVocabularyTable(
        tf.lookup.TextFileInitializer(str(vocab), tf.string, tf.lookup.TextFileIndex.WHOLE_LINE, tf.int64,
                                      tf.lookup.TextFileIndex.LINE_NUMBER), num_oov_buckets)
    ids, size = vocabulary_lookup(num_oov_buckets)(tokens, tf.constant(str(vocab)))
    assert int(size) == 3 + num_oov_buckets
    np.testing.assert_array_equal(ids.numpy(), reference.lookup(tokens).numpy())
    ragged = tf.RaggedTensor.from_row_lengths(tokens, [3, 0, 5])
    ragged_ids, _ = vocabulary_lookup(num_oov_buckets)(ragged, tf.constant(str(vocab)))
    assert ragged_ids.to_list() == reference.lookup(ragged).to_list()
    np.testing.assert_array_equal(oov_buckets(tokens, num_oov_buckets).numpy(),
                                  tf.strings.to_hash_bucket_fast(tokens, num_oov_buckets).numpy())


@pytest.mark.parametrize("vocabulary", ["a\n__missing__\nbb\n", "a\nbb\n"])
def test_empty_strings_get_the_missing_tokens_id_without_a_string_select(tmp_path, vocabulary):
    """The lookup of raw strings with "" -> MISSING_TOKEN's id equals looking up the substituted tokens.

    Checked with MISSING_TOKEN in the vocabulary (its line) and unseen (its OOV
    bucket), for vocabulary and hash ids, against StaticVocabularyTable and
    to_hash_bucket_fast on the substituted strings.
    """
    from ctrflow.pipeline.transform import _hashed
    from ctrflow.pipeline.vocab_lookup import vocabulary_lookup
    from ctrflow.schemas import MISSING_TOKEN

    vocab = tmp_path / "vocab.txt"
    vocab.write_text(vocabulary)
    raw = tf.constant(["bb", "", "a", "zz", "", "q"])
    tokens = tf.where(tf.equal(raw, ""), MISSING_TOKEN, raw)
    reference = tf.lookup.StaticVocabularyTable(
        tf.lookup.TextFileInitializer(str(vocab), tf.string, tf.lookup.TextFileIndex.WHOLE_LINE, tf.int64,
                                      tf.lookup.TextFileIndex.LINE_NUMBER), 5)
    ids, _ = vocabulary_lookup(5, MISSING_TOKEN)(raw, tf.constant(str(vocab)))
    expected = reference.lookup(tokens).numpy()
    np.testing.assert_array_equal(ids.numpy(), expected)
    assert expected[1] == expected[4] and expected[1] != reference.lookup(tf.constant([""])).numpy()[0]
    np.testing.assert_array_equal(_hashed(raw, MISSING_TOKEN, 97).numpy(),
                                  tf.strings.to_hash_bucket_fast(tokens, 97).numpy())
