"""Honest validation: the trainer's hash holdout of the training records (model.inputs.in_holdout)."""
from __future__ import annotations

import glob
import json
import os
from pathlib import Path

import numpy as np
import pytest
import tensorflow as tf

from ctrflow.model.inputs import make_dataset
from tests.test_trainer import LAYOUT, SPEC, click_rows, write_records


def _labels_and_users(ds) -> list[tuple[int, int, float]]:
    return sorted((int(u), int(i), float(y)) for x, y in ds
                  for u, i, y in zip(x["user"].numpy(), x["item"].numpy(), y.numpy()))


@pytest.mark.parametrize("cache", [True, False])
def test_holdout_splits_records_disjointly_and_completely(tmp_path: Path, cache: bool) -> None:
    rows = click_rows(600, seed=3)
    rows["row"] = np.arange(600)  # every record distinct
    pattern = write_records(tmp_path / "train", rows)
    spec = {**SPEC, "row": tf.io.FixedLenFeature([], tf.int64)}
    serialized = [r.numpy() for f in sorted(glob.glob(pattern))
                  for r in tf.data.TFRecordDataset(f, compression_type="GZIP")]
    ids = [tf.train.Example.FromString(r).features.feature["row"].int64_list.value[0] for r in serialized]
    buckets = tf.strings.to_hash_bucket_fast(serialized, 1_000_000_000).numpy()
    expected_valid = {i for i, b in zip(ids, buckets) if b < 200_000_000}

    valid = make_dataset(pattern, spec, LAYOUT, 64, shuffle=False, cache=cache, holdout=(0.2, True))
    train_part = make_dataset(pattern, spec, LAYOUT, 64, shuffle=True, seed=1, cache=cache, holdout=(0.2, False))
    n_valid = sum(int(y.shape[0]) for _, y in valid)
    n_train = sum(int(y.shape[0]) for _, y in train_part)
    assert n_valid == len(expected_valid) and 60 < n_valid < 180  # ~20% of 600
    assert n_valid + n_train == 600
    everything = make_dataset(pattern, spec, LAYOUT, 64, shuffle=False, cache=cache)
    assert sorted(_labels_and_users(valid) + _labels_and_users(train_part)) == _labels_and_users(everything)


@pytest.mark.slow
def test_trainer_selects_on_the_validation_holdout_and_reports_eval(clicks_run) -> None:
    """metrics.json: eval metrics of the selected model, the holdout's own metrics, and no eval rows used."""
    metrics = clicks_run["metrics"]
    assert metrics["selected_on"] == "valid" and metrics["split"] == "eval"
    assert metrics["eval_rows"] == len(clicks_run["eval_df"])
    records = [r.numpy() for f in sorted(glob.glob(os.path.join(clicks_run["data"], "train", "*.gz")))
               for r in tf.data.TFRecordDataset(f, compression_type="GZIP")]
    in_valid = int((tf.strings.to_hash_bucket_fast(records, 1_000_000_000).numpy() < 100_000_000).sum())
    assert metrics["valid"]["eval_rows"] == in_valid > 0
    assert metrics["platt"]["scale"] > 0
    assert metrics["valid"]["calibration"] == pytest.approx(1.0, abs=2e-3)  # Platt: mean p = base rate on valid
    saved = json.loads(Path(clicks_run["model"], "metrics.json").read_text())
    assert saved["valid"] == metrics["valid"] and saved["selected_epoch"] == 1


def test_fit_platt_meets_the_likelihood_equations_and_recovers_known_parameters() -> None:
    from ctrflow.model.calibration import fit_platt

    rng = np.random.default_rng(0)
    z = rng.normal(size=20_000)
    y = (rng.random(z.size) < 1 / (1 + np.exp(-(0.6 * z - 0.8)))).astype(float)
    a, b = fit_platt(z, y)
    p = 1 / (1 + np.exp(-(a * z + b)))
    assert abs((y - p).sum()) < 1e-3 and abs(((y - p) * z).sum()) < 1e-3  # score equations at the optimum
    assert abs(a - 0.6) < 0.05 and abs(b + 0.8) < 0.05
    assert fit_platt(-z, y)[0] == 1.0  # would reverse the order: identity
    assert fit_platt(z, np.ones_like(z)) == (1.0, 0.0)


def test_fit_platt_converges_on_overconfident_log_odds() -> None:
    """Undamped Newton from (1, 0) diverged here (a ~ 7e10, every score saturated); the halved steps must not."""
    from ctrflow.model.calibration import fit_platt

    rng = np.random.default_rng(0)
    z = 5.0 * rng.normal(size=20_000) - 2.5  # log-odds 5x too spread: true a = 0.3, b = 0.3
    y = (rng.random(z.size) < 1 / (1 + np.exp(-(0.3 * z + 0.3)))).astype(float)
    a, b = fit_platt(z, y)
    p = 1 / (1 + np.exp(-(a * z + b)))
    assert abs((y - p).sum()) < 1e-3 and abs(((y - p) * z).sum()) < 1e-3
    assert abs(a - 0.3) < 0.02 and abs(b - 0.3) < 0.05
