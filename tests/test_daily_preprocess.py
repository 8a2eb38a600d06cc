"""preprocess --base (append-only ids, kept boundaries) and --dates with the per-day analysis cache."""
from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from ctrflow.pipeline.artifacts import live_dir

DAILY_SCHEMA = """
name: daily
format: {type: csv, header: true}
columns:
  - {name: id, role: id, dtype: int64}
  - {name: age, role: numeric, bucketize: {num_buckets: 4}, scale: zscore}
  - {name: city, role: categorical, vocabulary: {num_oov_buckets: 1, frequency_threshold: 2}}
  - {name: clicked, role: label, positive: ["1"], negative: ["0"]}
"""
DATES = ["2026-11-01", "2026-11-02", "2026-11-03"]

def _live(folder) -> Path:
    """The published version of a preprocess output (what readers see)."""
    return Path(live_dir(str(folder)))



def day_frame(day: int, n: int = 300) -> pd.DataFrame:
    """Day d has cities c0..c(3+d), c(3+d) newest and rarest; one city seen once (under the threshold)."""
    rng = np.random.default_rng(day)
    cities = [f"c{i}" for i in range(4 + day)]
    weights = np.arange(len(cities), 0, -1, dtype=float)
    city = rng.choice(cities, n, p=weights / weights.sum())
    city[0] = f"once{day}"
    age = rng.uniform(18, 80, n).round(2)
    clicked = (rng.random(n) < 1 / (1 + np.exp(-(age - 45) / 10))).astype(int)
    return pd.DataFrame({"id": np.arange(day * 10_000, day * 10_000 + n), "age": age, "city": city,
                         "clicked": clicked})


@pytest.fixture(scope="module")
def days(tmp_path_factory):
    root = tmp_path_factory.mktemp("daily")
    (root / "daily.yaml").write_text(DAILY_SCHEMA)
    for i, d in enumerate(DATES):
        os.makedirs(root / "events" / d)
        day_frame(i).to_csv(root / "events" / d / "part.csv", index=False)
    return root


def _vocab(data, name="vocab_city") -> list[str]:
    return (_live(data) / "transform_fn" / "assets" / name).read_text().splitlines()


def _run(root, out, *extra) -> dict:
    from ctrflow.beam_jobs.preprocess import job as preprocess

    return preprocess.run(["--schema", str(root / "daily.yaml"), "--train", str(root / "events" / "{date}" / "*.csv"),
                           "--output", str(root / out), *extra])


def _transform(data, frame: pd.DataFrame) -> dict[str, np.ndarray]:
    import tensorflow as tf
    import tensorflow_transform as tft

    raw = {"age": tf.constant(frame["age"].to_numpy(np.float32)), "city": tf.constant(frame["city"].to_numpy(str)),
           "clicked": tf.constant(frame["clicked"].to_numpy(np.float32))}
    out = tft.TFTransformOutput(live_dir(str(data))).transform_features_layer()(raw)
    return {k: v.numpy() for k, v in out.items()}


@pytest.mark.slow
def test_base_keeps_ids_and_boundaries_and_appends_new_tokens(days):
    _run(days, "d1", "--dates", DATES[0])
    manifest = _run(days, "d2", "--dates", DATES[1], "--base", str(days / "d1"))
    old, new = _vocab(days / "d1"), _vocab(days / "d2")
    counts = day_frame(1)["city"].value_counts()
    expected_new = sorted((c for c in counts.index if c not in old and counts[c] >= 2),
                          key=lambda c: (-counts[c], [-ord(ch) for ch in c]))
    assert new == old + expected_new and expected_new  # append-only: every old token keeps its id
    assert manifest["vocabulary_growth"]["vocab_city"] == {"base": len(old), "gained": len(expected_new),
                                                           "size": len(new)}
    assert manifest["base"] == str(days / "d1")
    # yesterday's rows get the same bucket and city ids through today's graph (new OOV id moved: it follows
    # the vocabulary, so compare known cities only)
    rows = day_frame(0)
    known = rows[rows["city"].isin(old)]
    before, after = _transform(days / "d1", known), _transform(days / "d2", known)
    np.testing.assert_array_equal(before["city"], after["city"])
    np.testing.assert_array_equal(before["age"], after["age"])
    kept = json.loads((_live(days / "d2") / "analysis.json").read_text())["boundaries"]["age"]
    assert len(kept) == 3
    refit = _run(days, "d2r", "--dates", DATES[1], "--base", str(days / "d1"), "--refit-buckets")
    assert refit["refit_buckets"] and not (_live(days / "d2r") / "analysis.json").exists()


@pytest.mark.slow
def test_analysis_cache_reads_only_new_days_and_matches_a_fresh_cache(days):
    cache, fresh = str(days / "cache"), str(days / "fresh_cache")
    first = _run(days, "w12", "--dates", f"{DATES[0]}:{DATES[1]}", "--analysis-cache", cache)
    assert first["analysis_cache"]["analyzed_dates"] == DATES[:2]
    cached = _run(days, "w123", "--dates", f"{DATES[0]}:{DATES[2]}", "--analysis-cache", cache)
    assert cached["analysis_cache"]["analyzed_dates"] == [DATES[2]]
    assert cached["analysis_cache"]["cached_dates"] == 2
    assert cached["splits"]["train"]["output_rows"] == 900  # the transform pass covers the whole window
    scratch = _run(days, "w123_fresh", "--dates", f"{DATES[0]}:{DATES[2]}", "--analysis-cache", fresh)
    assert scratch["analysis_cache"]["analyzed_dates"] == DATES
    assert _vocab(days / "w123") == _vocab(days / "w123_fresh")
    assert ((_live(days / "w123") / "analysis.json").read_text()
            == (_live(days / "w123_fresh") / "analysis.json").read_text())
    # the vocabulary equals the one tf.Transform's full pass builds, token for token
    full = _run(days, "w123_tft", "--dates", f"{DATES[0]}:{DATES[2]}")
    assert "analysis_cache" not in full
    assert _vocab(days / "w123") == _vocab(days / "w123_tft")
    counts = pd.concat([day_frame(i) for i in range(3)])["city"].value_counts()
    assert set(_vocab(days / "w123")) == {c for c, n in counts.items() if n >= 2}
    # the cached run analyzes no row, yet clips to the window's training range like the full pass does
    ages = pd.concat([day_frame(i) for i in range(3)])["age"]
    probe = pd.DataFrame({"age": [-1e6, ages.min(), ages.max(), 1e6], "city": "c0", "clicked": 0})
    for data in ("w123", "w123_tft"):
        out = _transform(days / data, probe)
        for key in ("age", "age__position", "age__scaled"):
            assert out[key][0] == out[key][1] and out[key][3] == out[key][2], (data, key, out[key])
    ranges = json.loads((_live(days / "w123") / "analysis.json").read_text())["ranges"]
    assert ranges["age"] == [float(np.float32(ages.min())), float(np.float32(ages.max()))]
