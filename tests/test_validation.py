"""Honest validation: the trainer's hash holdout of the training records (model.inputs.in_holdout)."""
from __future__ import annotations

import glob
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import tensorflow as tf

from ctrflow.model.inputs import content_key, in_holdout, make_dataset
from tests.test_trainer import LAYOUT, SPEC, click_rows, write_records


def _varint(n: int) -> bytes:
    out = b""
    while True:
        byte, n = n & 0x7F, n >> 7
        out += bytes([byte | (0x80 if n else 0)])
        if not n:
            return out


def _entry(name: str, feature: tf.train.Feature) -> bytes:
    """One serialized ``Features.feature`` map entry: field 1 the name, field 2 the Feature."""
    value = feature.SerializeToString()
    return b"\x0a" + _varint(len(name)) + name.encode() + b"\x12" + _varint(len(value)) + value


def _example_bytes(entries: list[bytes]) -> bytes:
    """A serialized tf.Example whose feature map entries come in the given order."""
    features = b"".join(b"\x0a" + _varint(len(e)) + e for e in entries)
    return b"\x0a" + _varint(len(features)) + features


def expected_in_holdout(records: list[bytes], fraction: float) -> list[bool]:
    """Reference for ``in_holdout``: python protobuf parses each record, each (name, value) entry is
    fingerprinted into 2^40 buckets, the sum (order-free) is fingerprinted into 10^9 buckets."""
    out = []
    for r in records:
        feats = tf.train.Example.FromString(r).features.feature
        entries = [_entry(k, v) for k, v in feats.items()]
        total = int(tf.strings.to_hash_bucket_fast(entries, 2**40).numpy().sum()) if entries else 0
        out.append(int(tf.strings.to_hash_bucket_fast(str(total), 1_000_000_000).numpy()) <
                   round(fraction * 1_000_000_000))
    return out


def _canonical(record: bytes) -> tuple:
    feats = tf.train.Example.FromString(record).features.feature
    return tuple(sorted((k, v.SerializeToString()) for k, v in feats.items()))


def test_holdout_depends_on_content_not_on_feature_order() -> None:
    feats = {"user": tf.train.Feature(int64_list=tf.train.Int64List(value=[7])),
             "price": tf.train.Feature(float_list=tf.train.FloatList(value=[0.25, -1.5])),
             "tag": tf.train.Feature(bytes_list=tf.train.BytesList(value=[b"a", b"bc"]))}
    entries = [_entry(k, v) for k, v in feats.items()]
    orders = [entries, entries[::-1], [entries[1], entries[0], entries[2]]]
    records = [_example_bytes(e) for e in orders]
    assert len(set(records)) == 3 and all(tf.train.Example.FromString(r) == tf.train.Example(
        features=tf.train.Features(feature=feats)) for r in records)
    keys = content_key(tf.constant(records)).numpy()
    assert keys[0] == keys[1] == keys[2]
    assert int(keys[0]) == int(tf.strings.to_hash_bucket_fast(entries, 2**40).numpy().sum())
    other = _example_bytes([_entry("user", tf.train.Feature(int64_list=tf.train.Int64List(value=[8])))] +
                           entries[1:])
    assert content_key(tf.constant([other])).numpy()[0] != keys[0]
    empty = tf.train.Example().SerializeToString()
    assert content_key(tf.constant(empty)).numpy() == 0  # scalar in, scalar out
    for fraction in (0.0, 0.3, 0.999):
        got = in_holdout(tf.constant(records + [other, empty]), fraction).numpy().tolist()
        assert got == expected_in_holdout(records + [other, empty], fraction)
        assert got[0] == got[1] == got[2]


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
    expected_valid = {i for i, inside in zip(ids, expected_in_holdout(serialized, 0.2)) if inside}

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
    in_valid = sum(expected_in_holdout(records, 0.1))
    assert metrics["valid"]["eval_rows"] == in_valid > 0
    assert metrics["platt"]["scale"] > 0
    assert metrics["valid"]["calibration"] == pytest.approx(1.0, abs=2e-3)  # Platt: mean p = base rate on valid
    saved = json.loads(Path(clicks_run["model"], "metrics.json").read_text())
    assert saved["valid"] == metrics["valid"] and saved["selected_epoch"] == 1


@pytest.mark.slow
def test_holdout_is_the_same_in_two_preprocess_runs_of_the_same_rows(clicks_run, tmp_path: Path) -> None:
    """A second `ctrflow preprocess` (another process) of the same files: same rows in the holdout."""
    from ctrflow.pipeline.artifacts import live_dir

    proc = subprocess.run([sys.executable, "-m", "ctrflow.cli", "preprocess", "--schema", clicks_run["schema"],
                           "--train", clicks_run["train_csv"], "--eval", clicks_run["eval_csv"],
                           "--output", str(tmp_path / "again")], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr[-2000:]

    def membership(data: str) -> dict[tuple, bool]:
        records = [r.numpy() for f in sorted(glob.glob(os.path.join(data, "train", "*.gz")))
                   for r in tf.data.TFRecordDataset(f, compression_type="GZIP")]
        inside = in_holdout(tf.constant(records), 0.1).numpy().tolist()
        assert inside == expected_in_holdout(records, 0.1)
        out: dict[tuple, bool] = {}
        for r, v in zip(records, inside):
            assert out.setdefault(_canonical(r), v) == v  # identical content: same side
        return out

    first, second = membership(clicks_run["data"]), membership(live_dir(str(tmp_path / "again")))
    assert first == second
    n, k = len(clicks_run["train_df"]), sum(first.values())
    assert len(first) > 0.9 * n  # distinct rows, so the fraction below counts rows
    share = sum(v for v in first.values()) / len(first)
    assert abs(share - 0.1) < 4 * (0.1 * 0.9 / len(first)) ** 0.5, (k, share)


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
