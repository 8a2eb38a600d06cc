"""Metrics by slice (model.slices) against pandas/numpy computations written here."""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from tests.test_warm_start_and_gate import loop  # noqa: F401  (the baseline/new-day fixture of the gate tests)


def _rank_auc(y: np.ndarray, s: np.ndarray) -> float:
    ranks = pd.Series(s).rank(method="average").to_numpy()
    pos = y == 1
    m, n = pos.sum(), (~pos).sum()
    return float((ranks[pos].sum() - m * (m + 1) / 2) / (m * n))


def _delong_pairwise(y: np.ndarray, s: np.ndarray) -> tuple[float, float]:
    """DeLong from its definition: the full positive x negative kernel matrix (small n only)."""
    pos, neg = s[y == 1], s[y == 0]
    psi = (pos[:, None] > neg[None, :]).astype(float) + 0.5 * (pos[:, None] == neg[None, :])
    v10, v01 = psi.mean(axis=1), psi.mean(axis=0)
    var = np.var(v10, ddof=1) / len(pos) + np.var(v01, ddof=1) / len(neg)
    return float(psi.mean()), float(np.sqrt(var))


def _logloss(y, p):
    p = np.clip(p, 1e-7, 1 - 1e-7)
    return float(-np.mean(y * np.log(p) + (1 - y) * np.log(1 - p)))


def test_delong_matches_the_pairwise_definition_with_ties():
    from ctrflow.model.slices import delong_auc, paired_auc_delta

    rng = np.random.default_rng(0)
    y = (rng.random(300) < 0.3).astype(int)
    s = np.round(rng.random(300) * 0.5 + 0.3 * y, 2)  # rounded: many ties
    got = delong_auc(y, s)
    auc, se = _delong_pairwise(y, s)
    assert got["auc"] == pytest.approx(auc, abs=1e-12) and got["auc"] == pytest.approx(_rank_auc(y, s), abs=1e-12)
    assert got["auc_se"] == pytest.approx(se, rel=1e-9)
    assert got["auc_ci_low"] == pytest.approx(auc - 1.959963984540054 * se, rel=1e-9)
    assert got["auc_ci_high"] == pytest.approx(auc + 1.959963984540054 * se, rel=1e-9)
    # paired: the kernel of the difference is the difference of the kernels
    s2 = np.round(rng.random(300) * 0.5 + 0.1 * y, 2)
    pos, neg = y == 1, y == 0
    k = lambda sc: (sc[pos][:, None] > sc[neg][None, :]) + 0.5 * (sc[pos][:, None] == sc[neg][None, :])  # noqa: E731
    d = k(s) - k(s2)
    var = np.var(d.mean(axis=1), ddof=1) / pos.sum() + np.var(d.mean(axis=0), ddof=1) / neg.sum()
    paired = paired_auc_delta(y, s, s2)
    assert paired["delta"] == pytest.approx(d.mean(), abs=1e-12)
    assert paired["delta_se"] == pytest.approx(np.sqrt(var), rel=1e-9)


def test_delong_standard_error_agrees_with_a_bootstrap():
    from ctrflow.model.slices import delong_auc

    rng = np.random.default_rng(1)
    y = (rng.random(2000) < 0.2).astype(int)
    s = rng.normal(0.8 * y, 1.0)
    boot = []
    for _ in range(400):
        i = rng.integers(0, y.size, y.size)
        boot.append(_rank_auc(y[i], s[i]))
    assert delong_auc(y, s)["auc_se"] == pytest.approx(np.std(boot, ddof=1), rel=0.15)


def test_one_class_gives_no_auc():
    from ctrflow.model.slices import delong_auc

    assert delong_auc(np.ones(5), np.arange(5.0))["auc"] is None


def test_top_values_and_other_grouping_is_exact():
    from ctrflow.model.slices import MISSING, OTHER, slice_keys

    values = pd.Series(["a"] * 5 + ["b"] * 3 + ["c"] * 3 + ["d"] * 1 + [None, ""] + ["e"] * 2)
    keys = slice_keys(values, top=3)
    # counts: a 5, b 3, c 3, e 2, missing 2 (None and ""), d 1 -> top 3 = a, b, c (ties by text)
    expected = ["a"] * 5 + ["b"] * 3 + ["c"] * 3 + [OTHER] + [OTHER, OTHER] + [OTHER] * 2
    assert keys.tolist() == expected
    assert slice_keys(values, top=5).tolist()[12:14] == [MISSING, MISSING]


def test_slice_metrics_match_pandas_per_group():
    from ctrflow.model.slices import OTHER, slice_metrics

    rng = np.random.default_rng(2)
    n = 5000
    country = rng.choice(["us", "de", "fr", "jp", "br", "xx"], n, p=[0.4, 0.2, 0.15, 0.15, 0.08, 0.02])
    device = rng.choice(["mobile", "desktop"], n)
    y = (rng.random(n) < 0.25).astype(int)
    p = np.clip(0.2 + 0.3 * y * (country != "fr") + rng.normal(0, 0.15, n), 0.01, 0.99)
    frame = pd.DataFrame({"country": country, "device": device})
    doc = slice_metrics(frame, ["country", "device"], y, p, top=4, min_rows=150)
    want = pd.DataFrame({"key": np.where(np.isin(country, ["us", "de", "fr", "jp"]), country, OTHER), "y": y, "p": p})
    got = {s["value"]: s for s in doc["columns"]["country"]["slices"]}
    assert set(got) == {"us", "de", "fr", "jp", OTHER}
    for key, g in want.groupby("key"):
        s = got[key]
        assert s["rows"] == len(g) and s["positives"] == g.y.sum()
        assert s["auc"] == pytest.approx(_rank_auc(g.y.to_numpy(), g.p.to_numpy()), abs=1e-12)
        assert s["logloss"] == pytest.approx(_logloss(g.y.to_numpy(), g.p.to_numpy()), rel=1e-9)
        assert s["mean_score"] == pytest.approx(g.p.mean(), rel=1e-12)
        assert s["calibration"] == pytest.approx(g.p.mean() / g.y.mean(), rel=1e-12)
    aucs = [s["auc"] for s in doc["columns"]["country"]["slices"]]
    assert aucs == sorted(aucs) and doc["columns"]["country"]["slices"][0]["value"] == "fr"  # worst first
    assert len(doc["columns"]["device"]["slices"]) == 2


def test_small_slices_say_so():
    from ctrflow.model.slices import slice_metrics

    frame = pd.DataFrame({"c": ["a"] * 50 + ["b"] * 10})
    y = np.r_[np.tile([0, 1], 25), np.zeros(10)]
    doc = slice_metrics(frame, ["c"], y, np.linspace(0, 1, 60), top=5, min_rows=20)
    by = {s["value"]: s for s in doc["columns"]["c"]["slices"]}
    assert by["a"]["auc"] is not None and by["b"]["auc"] is None and "too few rows (10 < 20)" in by["b"]["note"]
    doc = slice_metrics(frame, ["c"], y, np.linspace(0, 1, 60), top=5, min_rows=100)
    assert "no slice of c has 100 rows" in doc["columns"]["c"]["note"]


def test_slices_table_lists_worst_first():
    from ctrflow.model.slices import slice_metrics
    from ctrflow.pipeline.slice_report import slices_html

    frame = pd.DataFrame({"c": ["good"] * 100 + ["bad"] * 100})
    y = np.tile([0, 1], 100)
    p = np.r_[y[:100] * 0.8 + 0.1, np.linspace(0.2, 0.8, 100)]
    page = slices_html(slice_metrics(frame, ["c"], y, p, min_rows=10))
    assert page.index(">bad<") < page.index(">good<") and "DeLong" in page


# ----------------------------------------------------------------------------- evaluate and the gate (real models)

def _records_column(pattern: str, name: str) -> np.ndarray:
    """One int64 feature of every record, parsed with tf.train.Example (not ctrflow's reader)."""
    import glob
    import gzip

    import tensorflow as tf

    out = []
    for path in sorted(glob.glob(pattern)):
        for record in tf.data.TFRecordDataset(path, compression_type="GZIP").as_numpy_iterator():
            feature = tf.train.Example.FromString(record).features.feature[name]
            out.append(feature.int64_list.value[0])
    assert gzip  # the split files are GZIP TFRecords
    return np.array(out)


@pytest.mark.slow
def test_evaluate_slices_by_vocabulary_and_bucket_columns(clicks_run, tmp_path):
    import json
    from pathlib import Path

    from ctrflow.model import evaluate
    from ctrflow.model.export import load_metadata

    metrics = evaluate.run(["--model", clicks_run["model"], "--data", clicks_run["data_root"], "--output",
                            str(tmp_path), "--importance-rows", "0", "--slice-by", "city,device", "--slice-by", "age",
                            "--slice-top", "5", "--slice-min-rows", "40"])
    pattern = str(Path(clicks_run["data"]) / "eval" / "part-*.tfrecord.gz")
    meta = load_metadata(clicks_run["model"])
    labels, probs = evaluate.score(clicks_run["model"], pattern, meta.layout.label, 4096)
    vocab = (Path(clicks_run["data"]) / "transform_fn" / "assets" / "vocab_city").read_text().splitlines()
    ids = _records_column(pattern, "city")
    city = np.array([vocab[i] if i < len(vocab) else "(out of vocabulary)" for i in ids], object)
    # the raw eval table agrees: cities outside the top-10 vocabulary are out of vocabulary
    raw = clicks_run["eval_df"]["city"]
    assert sorted(pd.Series(city).value_counts().items()) == sorted(
        raw.where(raw.isin(vocab), "(out of vocabulary)").value_counts().items())
    counts = pd.Series(city).value_counts()
    top = sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))[:5]
    key = np.where(np.isin(city, [k for k, _ in top]), city, "(other)")
    got = {s["value"]: s for s in metrics["slices"]["columns"]["city"]["slices"]}
    assert set(got) == set(key)
    for value in set(key):
        m = key == value
        assert got[value]["rows"] == m.sum()
        assert got[value]["mean_score"] == pytest.approx(probs[m].astype(np.float64).mean(), rel=1e-12)
        if m.sum() >= 40 and 0 < labels[m].sum() < m.sum():
            assert got[value]["auc"] == pytest.approx(_rank_auc(labels[m], probs[m].astype(np.float64)), abs=1e-12)
    devices = {s["value"]: s["rows"] for s in metrics["slices"]["columns"]["device"]["slices"]}
    want = clicks_run["eval_df"]["device"].replace({"tv": "(out of vocabulary)"}).value_counts().to_dict()
    assert devices == want  # tv is under the vocabulary's frequency threshold
    ages = metrics["slices"]["columns"]["age"]["slices"]
    assert sum(s["rows"] for s in ages) == len(labels) and all(s["value"].startswith(("bucket", "(")) for s in ages)
    on_disk = json.loads((tmp_path / "metrics.json").read_text())
    assert on_disk["slices"]["columns"]["city"]["slices"][0] == metrics["slices"]["columns"]["city"]["slices"][0]
    page = (tmp_path / "index.html").read_text()
    assert "Metrics by slice" in page and "roc.png" in page
    with pytest.raises(Exception, match="tag: the transformed eval split keeps"):  # a hashed column
        evaluate.run(["--model", clicks_run["model"], "--data", clicks_run["data_root"], "--output",
                      str(tmp_path / "x"), "--slice-by", "tag"])


@pytest.mark.slow
def test_gate_refuses_a_model_that_loses_a_large_slice_and_names_it(loop):  # noqa: F811
    import json

    import tensorflow as tf

    from ctrflow import cli
    from ctrflow.model import export
    from tests.test_daily_preprocess import day_frame
    from tests.test_warm_start_and_gate import TRAIN

    base = ["train", "--data", str(loop / "d1"), *TRAIN, "--warm-start", str(loop / "m0"), "--baseline",
            str(loop / "m0"), "--slice-by", "city"]
    # any drop refuses (D = -1): exit 3, and promotion.json names exactly the checked slices (one train; the
    # promote and min-rows sides of the same rule are test_slice_rule_promotes_within_d_and_skips_small_slices)
    assert cli.main(base + ["--output", str(loop / "s2"), "--max-slice-auc-drop", "-1", "--min-slice-rows", "40"]) == 3
    doc = json.loads((loop / "s2" / "promotion.json").read_text())
    # the baseline's per-city AUC through its own export on the raw rows, grouped independently
    rows = day_frame(1)
    vocab = (_live_dir(loop / "d1") / "transform_fn" / "assets" / "vocab_city").read_text().splitlines()
    city = rows["city"].where(rows["city"].isin(vocab), "(out of vocabulary)")
    scores = export.load(str(loop / "m0")).signature("score_and_ids")(
        age=tf.constant(rows["age"].to_numpy(np.float32)), city=tf.constant(rows["city"].to_numpy(str)))["score"]
    scores, y = scores.numpy().astype(np.float64), rows["clicked"].to_numpy()
    got = {e["value"]: e for e in doc["slices"]["columns"]["city"]}
    assert {k: e["rows"] for k, e in got.items()} == city.value_counts().to_dict()
    checked = [k for k, e in got.items() if e["checked"]]
    assert checked == [k for k in got if got[k]["rows"] >= 40 and 0 < y[city == k].sum() < got[k]["rows"]]
    for k in checked:
        m = (city == k).to_numpy()
        one_pair = 1.0 / (y[m].sum() * (1 - y[m]).sum())  # float32 noise may split a tie (see the global gate test)
        assert got[k]["baseline_auc"] == pytest.approx(_rank_auc(y[m], scores[m]), abs=2 * one_pair)
        assert got[k]["auc_delta"] == pytest.approx(got[k]["new_auc"] - got[k]["baseline_auc"], abs=1e-12)
    assert doc["promote"] is False and sorted(doc["decided_by_slices"]) == sorted(f"city={k}" for k in checked)
    assert cli.main(["train", "--data", str(loop / "d1"), "--output", str(loop / "s5"), "--slice-by", "city",
                     "--max-slice-auc-drop", "0.1"]) == 2  # no --baseline: one line, usage error


def _live_dir(folder):
    from pathlib import Path

    from ctrflow.pipeline.artifacts import live_dir

    return Path(live_dir(str(folder)))


@pytest.mark.slow
def test_gate_slice_column_the_eval_split_cannot_give_back_stops_before_training(clicks_run, tmp_path):
    from ctrflow import cli

    code = cli.main(["train", "--data", clicks_run["data_root"], "--output", str(tmp_path / "m"), "--baseline",
                     clicks_run["model"], "--slice-by", "tag", "--max-slice-auc-drop", "0.01"])
    assert code == 2 and not (tmp_path / "m" / "export").exists()


def test_slice_rule_promotes_within_d_and_skips_small_slices():
    """The gate's rule on fixed scores: a drop beyond D on a slice of >= N rows refuses, nothing else does."""
    import pandas as pd

    from ctrflow.model.slice_gate import compare_slices

    rng = np.random.default_rng(3)
    n = 600
    frame = pd.DataFrame({"city": np.where(np.arange(n) < 400, "big", "small")})
    y = (rng.random(n) < 0.4).astype(float)
    old = y + rng.normal(0, 0.8, n)
    new = np.where(frame["city"] == "big", y + rng.normal(0, 1.6, n), old)  # worse on "big" only
    big = (frame["city"] == "big").to_numpy()
    drop = _rank_auc(y[big], old[big]) - _rank_auc(y[big], new[big])
    assert drop > 0.05
    refused = compare_slices(frame, ["city"], y, new, old, max_drop=drop / 2, min_rows=100)
    assert [(e["value"], e["checked"]) for e in refused["failed"]] == [("big", True)]
    assert refused["failed"][0]["auc_delta"] == pytest.approx(-drop, abs=1e-12)
    assert compare_slices(frame, ["city"], y, new, old, max_drop=drop * 2, min_rows=100)["failed"] == []
    too_small = compare_slices(frame, ["city"], y, new, old, max_drop=-1, min_rows=100_000)
    assert too_small["failed"] == [] and too_small["checked_slices"] == 0
