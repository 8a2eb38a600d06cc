"""Shared fixtures: a generated click table with known statistics, and one real
preprocess + train run that the end-to-end tests share (it takes ~40 s)."""
from __future__ import annotations

import os

import numpy as np
import pandas as pd
import pytest

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

CLICKS_SCHEMA = """
name: clicks
format: {type: csv, header: true, null_markers: ["", "NA"]}
columns:
  - {name: request_id, role: id, dtype: int64}
  - {name: age, role: numeric, bucketize: {num_buckets: 8, epsilon: 0.001}, scale: zscore}
  - {name: spend, role: numeric, log1p: true, bucketize: {num_buckets: 5}}
  - {name: city, role: categorical, vocabulary: {top_k: 10, num_oov_buckets: 2}}
  - {name: device, role: categorical, vocabulary: {frequency_threshold: 50}}
  - {name: tag, role: categorical, hash: {buckets: 13}}
  - {name: campaign, role: passthrough}
  - {name: clicked, role: label, positive: ["1"], negative: ["0"]}
crosses:
  - {columns: [city, device], hash_buckets: 50}
"""

# city i appears CITY_COUNTS[i] times in the training table: distinct counts, so the
# top-10 vocabulary and its order are known exactly
CITY_COUNTS = [400, 360, 330, 300, 270, 240, 210, 180, 150, 120, 100, 80, 60, 40, 30]
DEVICE_COUNTS = {"ios": 1500, "android": 1200, "web": 140, "tv": 30}  # tv is under frequency_threshold 50


def make_clicks(n: int, seed: int, *, first_id: int = 0, age_shift: float = 0.0,
                new_cities: float = 0.0) -> pd.DataFrame:
    """A click table with a learnable signal (age, city, device drive the label)."""
    rng = np.random.default_rng(seed)
    cities = np.repeat([f"city{i:02d}" for i in range(len(CITY_COUNTS))], CITY_COUNTS)
    devices = np.repeat(list(DEVICE_COUNTS), list(DEVICE_COUNTS.values()))
    city = np.resize(rng.permutation(cities), n)  # exact counts when n == len(cities)
    device = np.resize(rng.permutation(devices), n)
    if new_cities:
        city = np.where(rng.random(n) < new_cities, "brand-new-city", city)
    age = rng.uniform(18, 80, n) + age_shift
    spend = np.where(rng.random(n) < 0.6, 0.0, rng.exponential(50, n)).round(2)
    logit = (-1.0 + 0.05 * (age - 45) + 0.8 * (device == "ios")
             + np.array([0.1 * (int(c[4:]) % 5) if c.startswith("city") else 0.0 for c in city]))
    clicked = (rng.random(n) < 1 / (1 + np.exp(-logit))).astype(int)
    df = pd.DataFrame({
        "request_id": np.arange(first_id, first_id + n), "age": age.round(3), "spend": spend,
        "city": city, "device": device, "tag": [f"t{v}" for v in rng.integers(0, 40, n)],
        "campaign": [f"camp-{v}" for v in rng.integers(0, 3, n)], "clicked": clicked,
    })
    df.loc[rng.random(n) < 0.05, "age"] = np.nan  # 5% missing ages
    return df


def write_csv(df: pd.DataFrame, path) -> str:
    df.to_csv(path, index=False, na_rep="NA")
    return str(path)


@pytest.fixture(scope="session")
def clicks_run(tmp_path_factory):
    """Real preprocess (Beam + TFT) and a 1-epoch single DeepFM (``--ensemble 1``) train + export on generated clicks.

    A single model, so tests can rebuild the exported model from ``checkpoints/final.weights.h5``;
    ``tests/test_ensemble.py`` covers the (default) ensemble export.
    """
    from ctrflow.beam_jobs.preprocess import job as preprocess
    from ctrflow.model import train
    from ctrflow.pipeline.artifacts import live_dir

    root = tmp_path_factory.mktemp("clicks")
    schema = root / "clicks.yaml"
    schema.write_text(CLICKS_SCHEMA)
    train_df = make_clicks(sum(CITY_COUNTS), seed=1)
    eval_df = make_clicks(1000, seed=2, first_id=10_000)
    train_csv = write_csv(train_df, root / "train.csv")
    eval_csv = write_csv(eval_df, root / "eval.csv")
    data, model_dir = root / "data", root / "model"
    manifest = preprocess.run(["--schema", str(schema), "--train", train_csv, "--eval", eval_csv,
                               "--output", str(data)])
    metrics = train.run(["--data", str(data), "--output", str(model_dir), "--model", "deepfm", "--epochs", "1",
                         "--batch-size", "256", "--verbose", "0", "--ensemble", "1"])
    return {"root": root, "schema": str(schema), "train_df": train_df, "eval_df": eval_df,
            "train_csv": train_csv, "eval_csv": eval_csv, "data": live_dir(str(data)), "data_root": str(data),
            "model": str(model_dir),
            "manifest": manifest, "metrics": metrics}
