"""The analyzers of a real preprocess run against independent numpy/pandas computations."""
import json
import os

import numpy as np
import pytest
import tensorflow as tf

from tests.conftest import CITY_COUNTS, DEVICE_COUNTS

pytestmark = pytest.mark.slow


def _tft(run):
    import tensorflow_transform as tft
    return tft.TFTransformOutput(run["data"])


def _transform(run, df):
    raw = {
        "age": tf.constant(df["age"].to_numpy(np.float32)),
        "spend": tf.constant(df["spend"].to_numpy(np.float32)),
        "city": tf.constant(df["city"].to_numpy(object).astype(str)),
        "device": tf.constant(df["device"].to_numpy(object).astype(str)),
        "tag": tf.constant(df["tag"].to_numpy(object).astype(str)),
    }
    return {k: v.numpy() for k, v in _tft(run).transform_features_layer()(raw).items()}


def test_manifest_counts_every_row(clicks_run):
    splits = clicks_run["manifest"]["splits"]
    assert splits["train"]["input_rows"] == splits["train"]["output_rows"] == sum(CITY_COUNTS)
    assert splits["eval"]["input_rows"] == splits["eval"]["output_rows"] == 1000
    assert splits["train"]["rejected_rows"] == splits["eval"]["rejected_rows"] == 0
    on_disk = json.load(open(os.path.join(clicks_run["data"], "manifest.json")))
    assert on_disk["splits"] == splits


def test_vocabularies_equal_pandas_value_counts(clicks_run):
    tft_out = _tft(clicks_run)
    train = clicks_run["train_df"]
    city = [t.decode() for t in tft_out.vocabulary_by_name("vocab_city")]
    expected_city = train["city"].value_counts().head(10).index.tolist()
    assert city == expected_city == [f"city{i:02d}" for i in range(10)]
    device = [t.decode() for t in tft_out.vocabulary_by_name("vocab_device")]
    counts = train["device"].value_counts()
    assert device == counts[counts >= 50].index.tolist() == ["ios", "android", "web"]


def test_vocabulary_ids_oov_and_hash(clicks_run):
    df = clicks_run["eval_df"].head(50).copy()
    df.loc[0, "city"] = "never-seen"
    df.loc[1, "device"] = "tv"  # below frequency_threshold: an OOV id
    out = _transform(clicks_run, df)
    vocab = [f"city{i:02d}" for i in range(10)]
    for value, got in zip(df["city"], out["city"]):
        if value in vocab:
            assert got == vocab.index(value)
        else:
            assert got in (10, 11)  # num_oov_buckets: 2
    assert out["device"][1] == 3
    expected_tag = tf.strings.to_hash_bucket_fast(df["tag"].to_numpy(object).astype(str), 13).numpy()
    np.testing.assert_array_equal(out["tag"], expected_tag)
    assert out["city_x_device"].min() >= 0 and out["city_x_device"].max() < 50


def test_quantile_buckets_match_numpy_within_epsilon(clicks_run):
    train = clicks_run["train_df"]
    out = _transform(clicks_run, train)
    age = train["age"].to_numpy()
    present = ~np.isnan(age)
    assert (out["age"][~present] == 8).all()  # missing: the extra bucket after 8 quantile buckets
    ids = out["age"][present]
    values = age[present]
    # buckets are monotone in the value
    order = np.argsort(values, kind="stable")
    assert (np.diff(ids[order]) >= 0).all()
    # numpy's exact quantile buckets agree except within epsilon (0.001) of each boundary
    bounds = np.quantile(values, np.arange(1, 8) / 8)
    numpy_ids = np.searchsorted(bounds, values, side="right")
    disagree = np.count_nonzero(numpy_ids != ids)
    assert disagree <= 2 * 7 * 0.001 * values.size + 7
    counts = np.bincount(ids, minlength=8)
    assert np.all(np.abs(counts - values.size / 8) <= 0.001 * values.size * 2 + 2)


def test_zscore_and_point_mass_bucket(clicks_run):
    train = clicks_run["train_df"]
    out = _transform(clicks_run, train)
    age = train["age"].to_numpy()
    filled = np.where(np.isnan(age), 0.0, age)  # missing -> default 0 before scaling
    expected = (filled - filled.mean()) / filled.std()
    np.testing.assert_allclose(out["age__scaled"], expected, rtol=1e-3, atol=1e-3)
    # spend is 60% zeros: the zero point mass gets a bucket of its own
    zero = train["spend"].to_numpy() == 0
    assert len(set(out["spend"][zero])) == 1
    assert not set(out["spend"][zero]) & set(out["spend"][~zero])


def test_layout_and_training_profile(clicks_run):
    from ctrflow.pipeline.layout import FeatureLayout
    layout = FeatureLayout.from_json(open(os.path.join(clicks_run["data"], "layout.json")).read())
    sizes = {f.name: f.num_ids for f in layout.sparse}
    assert sizes == {"age": 9, "spend": 6, "city": 12, "device": 4, "tag": 13, "city_x_device": 50}
    assert [f.name for f in layout.dense] == ["age__scaled"] and layout.label == "clicked"
    profile = json.load(open(os.path.join(clicks_run["data"], "stats.json")))["train"]
    train = clicks_run["train_df"]
    assert profile["rows"] == len(train)
    assert profile["missing"]["age"] == int(train["age"].isna().sum())
    assert profile["ranges"]["age"] == pytest.approx([train["age"].min(), train["age"].max()], rel=1e-6)
    city_hist = {int(k): v for k, v in profile["ids"]["city"].items()}
    assert [city_hist[i] for i in range(10)] == CITY_COUNTS[:10]
    assert city_hist[10] + city_hist.get(11, 0) == sum(CITY_COUNTS[10:])
    assert sum(profile["ids"]["device"].values()) == sum(DEVICE_COUNTS.values())
