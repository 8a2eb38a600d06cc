"""The trainer: CLI options, sparse optimisers, pair formation, downsampling, determinism, resume."""
from __future__ import annotations

import dataclasses
import json
import os
from pathlib import Path

import keras
import numpy as np
import pytest
import tensorflow as tf

from ctrflow.model import train
from ctrflow.model.config import ModelConfig
from ctrflow.model.inputs import form_pairs, make_dataset, make_pair_dataset
from ctrflow.model.models import build_model, compile_model
from ctrflow.pipeline.layout import FeatureLayout, SparseFeature

LAYOUT = FeatureLayout(sparse=(SparseFeature("user", 50), SparseFeature("item", 20)), dense=(), label="label",
                       group_key="__group__")
SPEC = {"user": tf.io.FixedLenFeature([], tf.int64), "item": tf.io.FixedLenFeature([], tf.int64),
        "label": tf.io.FixedLenFeature([], tf.float32)}


def write_records(path: Path, rows: dict[str, np.ndarray], shards: int = 2) -> str:
    """Gzip TFRecords of transformed-style examples, like the preprocess job's output."""
    path.mkdir(parents=True, exist_ok=True)
    n = len(next(iter(rows.values())))
    for shard, idx in enumerate(np.array_split(np.arange(n), shards)):
        with tf.io.TFRecordWriter(str(path / f"part-{shard:05d}.tfrecord.gz"), "GZIP") as w:
            for i in idx:
                feats = {}
                for k, v in rows.items():
                    if v.dtype.kind == "f":
                        feats[k] = tf.train.Feature(float_list=tf.train.FloatList(value=[float(v[i])]))
                    else:
                        feats[k] = tf.train.Feature(int64_list=tf.train.Int64List(value=[int(v[i])]))
                w.write(tf.train.Example(features=tf.train.Features(feature=feats)).SerializeToString())
    return str(path / "part-*.tfrecord.gz")


def click_rows(n: int, seed: int = 0, base_logit: float = -1.5) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    user, item = rng.integers(0, 50, n), rng.integers(0, 20, n)
    logit = base_logit + 1.5 * (user < 10) - 1.0 * (item >= 15)
    label = (rng.random(n) < 1 / (1 + np.exp(-logit))).astype(np.float32)
    return {"user": user, "item": item, "label": label, "__group__": user * 7919 + 3}


# ------------------------------------------------------------------- CLI


def test_help_lists_every_model_config_option(capsys) -> None:
    with pytest.raises(SystemExit):
        train.run(["--help"])
    text = capsys.readouterr().out
    for f in dataclasses.fields(ModelConfig):
        assert "--" + f.name.replace("_", "-") in text, f.name
    for flag in ("--batch-size", "--epochs", "--patience", "--seed", "--deterministic", "--resume", "--config",
                 "--pair-window", "--cache", "--steps-per-epoch", "--verbose"):
        assert flag in text


# ------------------------------------------------------------ optimisers


def _one_step(config: ModelConfig, x: dict, y: np.ndarray, steps: int = 3) -> list[np.ndarray]:
    keras.utils.set_random_seed(0)
    model = compile_model(build_model(LAYOUT, config), config)
    for _ in range(steps):
        model.train_on_batch(x, y)
    return [v.numpy() for v in model.trainable_variables]


@pytest.mark.parametrize("optimizer, model", [("adagrad", "deepfm"), ("sgd", "deepfm"), ("ftrl", "lr")])
def test_sparse_updates_equal_dense_updates(optimizer: str, model: str) -> None:
    """Adagrad/FTRL/SGD: touching only the batch's rows is exact, not an approximation.

    Ids are unique within the batch: with duplicates Keras' own Adagrad/FTRL
    square each occurrence's gradient separately (sum of squares), while the
    sparse versions square the summed gradient, as the dense gradient would.
    FTRL on LR: dense FTRL resets never-touched rows of a non-zero-initialised
    table to 0 on its first step; zero-initialised weights (FTRL's usual
    setting) behave identically.
    """
    rng = np.random.default_rng(0)
    x = {"user": rng.permutation(50)[:20], "item": rng.permutation(20)}
    y = (rng.random(20) < 0.4).astype("float32")
    base = ModelConfig(model=model, embedding_dim=4, hidden_units=(8,), dropout=0.0, optimizer=optimizer,
                       learning_rate=0.1, ftrl_l1=0.01, ftrl_l2=0.01, row_weight_decay=0.0)
    sparse = _one_step(base, x, y)
    dense = _one_step(dataclasses.replace(base, sparse_updates=False), x, y)
    for a, b in zip(sparse, dense):
        np.testing.assert_allclose(a, b, rtol=2e-5, atol=1e-6)


def test_lazy_adam_updates_only_touched_rows_like_numpy() -> None:
    table = keras.Variable(np.random.default_rng(0).normal(size=(6, 3)).astype("float32"))
    from ctrflow.model.optimizers import LazyAdam

    opt = LazyAdam(learning_rate=0.1)
    opt.build([table])
    ids = tf.constant([1, 4, 1])
    grads = tf.constant(np.arange(9, dtype="float32").reshape(3, 3) / 10)
    before = table.numpy().copy()
    m, v = np.zeros((6, 3)), np.zeros((6, 3))
    w = before.astype("float64")
    for step in (1, 2):
        opt.apply_gradients([(tf.IndexedSlices(grads, ids, tf.constant([6, 3])), table)])
        g = np.zeros((6, 3))
        np.add.at(g, ids.numpy(), grads.numpy())
        touched = [1, 4]
        m[touched] = 0.9 * m[touched] + 0.1 * g[touched]
        v[touched] = 0.999 * v[touched] + 0.001 * g[touched] ** 2
        alpha = 0.1 * np.sqrt(1 - 0.999 ** step) / (1 - 0.9 ** step)
        w[touched] -= alpha * m[touched] / (np.sqrt(v[touched]) + 1e-7)
    np.testing.assert_allclose(table.numpy(), w, rtol=1e-5, atol=1e-6)
    untouched = [0, 2, 3, 5]
    np.testing.assert_array_equal(table.numpy()[untouched], before[untouched])


# ----------------------------------------------------------------- pairs


def reference_pairs(group: np.ndarray, label: np.ndarray, u: np.ndarray) -> set[tuple[int, int]]:
    """Each positive i with n >= 1 negatives in its group -> its floor(u[i]*n)-th negative (window order)."""
    pairs = set()
    for i in np.flatnonzero(label > 0.5):
        negatives = np.flatnonzero((group == group[i]) & (label < 0.5))
        if negatives.size:
            pairs.add((int(i), int(negatives[min(int(np.floor(u[i] * negatives.size)), negatives.size - 1)])))
    return pairs


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_form_pairs_matches_numpy_reference(seed: int) -> None:
    rng = np.random.default_rng(seed)
    n = 500
    group = rng.integers(0, 40, n) * 1_000_003 - 7  # arbitrary int64 hashes, some negative
    label = (rng.random(n) < 0.3).astype(np.float32)
    label[group == group[0]] = 1.0  # a group with positives only: its positives are dropped
    u = rng.random(n).astype(np.float32)
    pos, neg = form_pairs(tf.constant(group), tf.constant(label), tf.constant(u))
    got = set(zip(pos.numpy().tolist(), neg.numpy().tolist()))
    assert len(got) == pos.shape[0]
    assert got == reference_pairs(group, label, u)


def test_pair_dataset_pairs_within_groups(tmp_path: Path) -> None:
    rows = click_rows(3000)
    pattern = write_records(tmp_path / "train", rows)
    spec = {**SPEC, "__group__": tf.io.FixedLenFeature([], tf.int64)}
    ds = make_pair_dataset(pattern, spec, LAYOUT, 128, seed=3, pair_window=1000)
    users_pos, users_neg, n = [], [], 0
    for batch in ds:
        users_pos.append(batch["pos"]["user"].numpy())
        users_neg.append(batch["neg"]["user"].numpy())
        n += batch["pos"]["user"].shape[0]
    # the group is the user, so a pair shares its user; every positive with a negative in its window is used
    np.testing.assert_array_equal(np.concatenate(users_pos), np.concatenate(users_neg))
    expected = sum(len(reference_pairs(rows["__group__"][w], rows["label"][w], np.zeros(w.size)))
                   for w in np.array_split(np.arange(3000), 3))
    assert n == expected


def test_pairwise_needs_a_group_key(tmp_path: Path) -> None:
    pattern = write_records(tmp_path / "train", click_rows(10))
    with pytest.raises(ValueError, match="pairwise: {group"):
        make_pair_dataset(pattern, SPEC, dataclasses.replace(LAYOUT, group_key=None), 8)


# ----------------------------------------------------------- downsampling


def test_downsampling_keeps_positives_and_calibrates_back_to_base_rate(tmp_path: Path) -> None:
    rows = click_rows(20_000, seed=4)
    pattern = write_records(tmp_path / "train", rows)
    keep = 0.25
    ds = make_dataset(pattern, SPEC, LAYOUT, 1024, shuffle=True, seed=1, negative_keep_rate=keep)
    labels = np.concatenate([y.numpy() for _, y in ds])
    pos = rows["label"].sum()
    assert labels.sum() == pos  # every positive kept
    kept_negatives = (labels < 0.5).sum() / (len(rows["label"]) - pos)
    assert abs(kept_negatives - keep) < 0.02
    _assert_calibrated_back(ModelConfig(model="lr", optimizer="adagrad", learning_rate=0.1, negative_keep_rate=keep),
                            ds, pattern)


def _assert_calibrated_back(config: ModelConfig, ds, pattern: str) -> None:
    """Trained on inflated odds, the raw sigmoid overshoots the base rate; probabilities() must not."""
    keras.utils.set_random_seed(0)
    model = compile_model(build_model(LAYOUT, config), config)
    model.fit(ds, epochs=8, verbose=0)
    full = make_dataset(pattern, SPEC, LAYOUT, 4096, shuffle=False)
    labels, probs = train.predict_split(model, full)
    raw = np.concatenate([keras.ops.convert_to_numpy(keras.ops.sigmoid(model(x))).ravel() for x, _ in full])
    base_rate = labels.mean()
    assert raw.mean() > 1.5 * base_rate
    assert abs(probs.mean() / base_rate - 1) < 0.05


def test_positive_class_weight_calibrates_back_to_base_rate(tmp_path: Path) -> None:
    rows = click_rows(20_000, seed=5)
    pattern = write_records(tmp_path / "train", rows)
    ds = make_dataset(pattern, SPEC, LAYOUT, 1024, shuffle=True, seed=1, positive_weight=4.0)
    _, y, w = next(iter(ds))
    np.testing.assert_array_equal(w.numpy(), np.where(y.numpy() > 0.5, 4.0, 1.0))
    _assert_calibrated_back(ModelConfig(model="lr", optimizer="adagrad", learning_rate=0.1, positive_weight=4.0),
                            ds, pattern)


# ------------------------------------------------ runs on preprocessed data


@pytest.mark.slow
def test_same_seed_gives_same_metrics(clicks_run, tmp_path: Path) -> None:
    args = ["--data", clicks_run["data"], "--epochs", "2", "--batch-size", "128", "--deterministic",
            "--verbose", "0", "--dropout", "0.3", "--seed", "7"]
    first = train.run(args + ["--output", str(tmp_path / "a")])
    second = train.run(args + ["--output", str(tmp_path / "b")])
    assert first["auc"] == second["auc"] and first["logloss"] == second["logloss"]
    assert first["history"] == second["history"]


class _Interrupt(keras.callbacks.Callback):
    """Simulates a preemption after the first epoch (and its backup)."""

    def on_epoch_end(self, epoch, logs=None):
        raise KeyboardInterrupt


@pytest.mark.slow
def test_resume_restores_weights_optimizer_state_and_epoch(clicks_run, tmp_path: Path, monkeypatch) -> None:
    out = tmp_path / "model"
    args = ["--data", clicks_run["data"], "--output", str(out), "--epochs", "3", "--patience", "5",
            "--batch-size", "256", "--verbose", "0", "--resume"]
    from ctrflow.model import callbacks as cb

    make = cb.make_callbacks
    monkeypatch.setattr(cb, "make_callbacks", lambda *a, **k: make(*a, **k) + [_Interrupt()])
    with pytest.raises(KeyboardInterrupt):
        train.run(args)
    backup = out / "checkpoints" / "backup" / "latest.weights.h5"
    assert backup.exists()
    layout = FeatureLayout.from_json((Path(clicks_run["data"]) / "layout.json").read_text())
    config = ModelConfig()
    restored = compile_model(build_model(layout, config), config)
    restored.load_weights(str(backup))
    rows = sum(1 for _ in tf.data.TFRecordDataset(tf.io.gfile.glob(os.path.join(clicks_run["data"], "train", "*")),
                                                  compression_type="GZIP"))
    # one epoch of steps (Keras also counts the end-of-data call of an epoch of unknown length)
    assert int(restored.optimizer.iterations) in (-(-rows // 256), -(-rows // 256) + 1)
    assert any(np.abs(v.numpy()).sum() > 0 for v in restored.optimizer.variables[2:])
    monkeypatch.setattr(cb, "make_callbacks", make)
    metrics = train.run(args)
    assert metrics["epochs_run"] == 2  # epochs 2 and 3 only
    assert not backup.exists()  # Keras removes the backup after a finished run
    assert json.loads((out / "metrics.json").read_text())["auc"] > 0.6


# -------------------------------------------------------- pairwise, end to end


def test_schema_pairwise_group_must_be_categorical() -> None:
    from conftest import CLICKS_SCHEMA

    from ctrflow.schemas import loads_schema
    from ctrflow.schemas.loader import SchemaError

    assert loads_schema(CLICKS_SCHEMA + "pairwise: {group: city}\n").pairwise_group == "city"
    with pytest.raises(SchemaError, match="group must name a categorical column"):
        loads_schema(CLICKS_SCHEMA + "pairwise: {group: request_id}\n")


@pytest.mark.slow
def test_pairwise_training_from_a_grouped_schema(clicks_run, tmp_path: Path) -> None:
    """preprocess carries the group hash as __group__; train --loss pairwise forms pairs from it."""
    from conftest import CLICKS_SCHEMA

    from ctrflow.beam_jobs.preprocess import job as preprocess

    schema = tmp_path / "clicks_pairs.yaml"
    schema.write_text(CLICKS_SCHEMA + "pairwise: {group: city}\n")
    data = tmp_path / "data"
    preprocess.run(["--schema", str(schema), "--train", clicks_run["train_csv"], "--eval", clicks_run["eval_csv"],
                    "--output", str(data)])
    from ctrflow.pipeline.artifacts import PreprocessArtifacts
    layout = FeatureLayout.from_json(PreprocessArtifacts.live(str(data)).layout_text())
    assert layout.group_key == "__group__"
    metrics = train.run(["--data", str(data), "--output", str(tmp_path / "model"), "--loss", "pairwise",
                         "--epochs", "2", "--batch-size", "128", "--verbose", "0"])
    assert metrics["auc"] > 0.6  # ranking within cities still ranks clicks overall
