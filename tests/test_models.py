"""Models: build, train (pointwise / R-Drop / pairwise / wide optimiser), save, config."""
from __future__ import annotations

import argparse
import dataclasses
from pathlib import Path

import keras
import numpy as np
import pytest
import tensorflow as tf

from ctrflow.model.config import ModelConfig
from ctrflow.model.losses import calibrate_downsampled
from ctrflow.model.models import CTRModel, build_model, compile_model, feature_spec
from ctrflow.pipeline.layout import DenseFeature, FeatureLayout, GlobalIndex, SparseFeature

LAYOUT = FeatureLayout(
    sparse=(
        SparseFeature("user", 5, group="user"),
        SparseFeature("tags", 7, multivalent=True, group="item"),
        SparseFeature("item", 6, group="item"),
        SparseFeature("user_x_item", 30, wide_only=True),
    ),
    dense=(DenseFeature("price"), DenseFeature("age")),
    label="clicked",
)
GLOBAL_LAYOUT = dataclasses.replace(LAYOUT, global_index=GlobalIndex(num_ids=40, num_fields=3))
SMALL = dict(embedding_dim=4, hidden_units=(8, 8), dropout=0.0, learning_rate=0.02)


def make_features(layout: FeatureLayout, n: int, seed: int = 0, tag_len: int = 3) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    x: dict[str, np.ndarray] = {}
    for f in layout.sparse:
        if f.multivalent:
            ids = rng.integers(0, f.num_ids, (n, tag_len))
            x[f.name] = np.where(rng.random((n, tag_len)) < 0.4, -1, ids)
        else:
            x[f.name] = rng.integers(0, f.num_ids, n)
    for f in layout.dense:
        x[f.name] = rng.normal(size=n).astype("float32")
    if layout.global_index is not None:
        gi = layout.global_index
        x[gi.index_key] = rng.integers(0, gi.num_ids, (n, gi.num_fields))
        x[gi.value_key] = rng.uniform(0.0, 1.0, (n, gi.num_fields)).astype("float32")
    return x


def make_labels(x: dict[str, np.ndarray]) -> np.ndarray:
    """A learnable target: clicks come from two users."""
    return (x["user"] < 2).astype("float32")


def dataset(*arrays, batch: int = 32) -> tf.data.Dataset:
    return tf.data.Dataset.from_tensor_slices(tuple(arrays)).batch(batch)


def model_for(layout: FeatureLayout = LAYOUT, **options) -> CTRModel:
    config = ModelConfig(**{**SMALL, **options})
    return compile_model(build_model(layout, config), config)


def np_logits(model: CTRModel, x: dict[str, np.ndarray], training: bool = False) -> np.ndarray:
    return keras.ops.convert_to_numpy(model(x, training=training)).astype("float64")


def softplus(z: np.ndarray) -> np.ndarray:
    return np.logaddexp(0.0, z)


# --------------------------------------------------------------- training


@pytest.mark.parametrize("options, label_shape", [
    (dict(model="deepfm", residual="additive", hadamard_groups=("user", "item")), (-1,)),
    (dict(model="wide_deep", residual="gated", norm="layer", wide_optimizer="ftrl",
          wide_learning_rate=0.1), (-1, 1)),
    (dict(model="lr", optimizer="adagrad", learning_rate=0.2), (-1,)),
])
def test_fit_two_steps_lowers_loss_and_logs_metrics(options: dict, label_shape: tuple) -> None:
    x = make_features(LAYOUT, 128)
    y = make_labels(x).reshape(label_shape)
    model = model_for(**options)
    train, val = dataset(x, y), dataset(x, y, batch=128)
    before = model.evaluate(val, verbose=0, return_dict=True)
    history = model.fit(
        train, validation_data=val, epochs=1, steps_per_epoch=2, verbose=0,
        callbacks=[keras.callbacks.EarlyStopping(monitor="val_auc", mode="max",
                                                 restore_best_weights=True)])
    logs = {k: v[-1] for k, v in history.history.items()}
    assert set(logs) == {"loss", "auc", "logloss", "val_loss", "val_auc", "val_logloss"}
    assert all(np.isfinite(v) for v in logs.values())
    assert logs["val_loss"] < before["loss"]
    assert model(x).shape == (128, 1)


def test_sample_weights_weight_the_loss() -> None:
    x = make_features(LAYOUT, 64)
    y = make_labels(x)
    w = np.random.default_rng(1).uniform(0.1, 3.0, 64).astype("float32")
    model = model_for(model="deepfm")
    model.fit(dataset(x, y, w), epochs=1, steps_per_epoch=2, verbose=0)
    z = np_logits(model, x)[:, 0]
    expected = np.mean(w * (softplus(z) - y * z))
    logs = model.evaluate(dataset(x, y, w, batch=64), verbose=0, return_dict=True)
    np.testing.assert_allclose(logs["loss"], expected, rtol=1e-5)


def test_rdrop_without_dropout_equals_pointwise_loss() -> None:
    x = make_features(LAYOUT, 32)
    y = make_labels(x)
    plain = model_for(model="deepfm", optimizer="sgd")
    rdrop = model_for(model="deepfm", optimizer="sgd", rdrop_alpha=5.0)
    rdrop.set_weights(plain.get_weights())
    loss_plain = plain.train_on_batch(x, y, return_dict=True)["loss"]
    loss_rdrop = rdrop.train_on_batch(x, y, return_dict=True)["loss"]
    assert loss_rdrop == loss_plain
    with_dropout = model_for(model="deepfm", rdrop_alpha=1.0, dropout=0.5)
    assert np.isfinite(with_dropout.train_on_batch(x, y, return_dict=True)["loss"])


def test_pairwise_loss_on_pos_neg_pairs() -> None:
    pos, neg = make_features(LAYOUT, 32, seed=1), make_features(LAYOUT, 32, seed=2, tag_len=5)
    model = model_for(model="deepfm", loss="pairwise")
    s_pos, s_neg = np_logits(model, pos, training=True), np_logits(model, neg, training=True)
    expected = np.mean(softplus(s_neg - s_pos))
    logs = model.train_on_batch({"pos": pos, "neg": neg}, np.zeros(32, "float32"), return_dict=True)
    np.testing.assert_allclose(logs["loss"], expected, rtol=1e-5)
    assert np.isfinite(logs["auc"]) and np.isfinite(logs["logloss"])
    pairs = tf.data.Dataset.from_tensor_slices(({"pos": pos, "neg": pos}, np.zeros(32, "float32")))
    history = model.fit(pairs.batch(16), epochs=1, verbose=0)
    assert np.isfinite(history.history["loss"][-1])


def test_wide_optimizer_owns_only_the_linear_weights() -> None:
    x = make_features(LAYOUT, 32)
    model = model_for(model="wide_deep", optimizer="sgd", learning_rate=0.0,
                      wide_optimizer="ftrl", wide_learning_rate=0.5)
    linear_ids = {id(v) for v in model.linear.trainable_variables}
    before = {id(v): v.numpy().copy() for v in model.trainable_variables}
    model.train_on_batch(x, make_labels(x))
    for v in model.trainable_variables:
        changed = not np.array_equal(v.numpy(), before[id(v)])
        assert changed == (id(v) in linear_ids), v.path


def test_global_index_layout_trains() -> None:
    layout = FeatureLayout(sparse=(), dense=(), label="clicked",
                           global_index=GlobalIndex(num_ids=25, num_fields=4))
    x = make_features(layout, 64)
    y = (x["feat_index"][:, 0] < 10).astype("float32")
    model = model_for(layout, model="deepfm")
    history = model.fit(dataset(x, y), epochs=1, verbose=0)
    assert np.isfinite(history.history["auc"][-1])
    assert model.embedding.num_fields == 4


def test_probabilities_undo_negative_downsampling() -> None:
    x = make_features(LAYOUT, 8)
    model = model_for(model="lr", negative_keep_rate=0.25)
    model.linear.bias.assign(np.array([0.7], "float32"))
    p = 1.0 / (1.0 + np.exp(-np_logits(model, x)))
    np.testing.assert_allclose(keras.ops.convert_to_numpy(model.probabilities(x)),
                               calibrate_downsampled(p, 0.25), rtol=1e-6)


@pytest.mark.parametrize("optimizer, schedule", [
    ("adam", "cosine"), ("adamw", "exponential"), ("sgd", "constant"), ("ftrl", "constant")])
def test_optimizers_and_schedules_compile(optimizer: str, schedule: str) -> None:
    x = make_features(LAYOUT, 16)
    model = model_for(model="lr", optimizer=optimizer, lr_schedule=schedule, decay_steps=10,
                      clipnorm=1.0)
    assert np.isfinite(model.train_on_batch(x, make_labels(x), return_dict=True)["loss"])


def test_plateau_schedule_cuts_the_learning_rate_after_patience_epochs_without_a_validation_gain(
        tmp_path: Path) -> None:
    """lr 0.01, factor 0.3, patience 1: val_auc 0.70, 0.72 (gain), 0.72 (no gain: cut), 0.71 (cut again)."""
    from ctrflow.model.callbacks import make_callbacks

    model = model_for(model="lr", lr_schedule="plateau", learning_rate=0.01, plateau_factor=0.3,
                      plateau_patience=1)
    callbacks = keras.callbacks.CallbackList(
        make_callbacks(str(tmp_path), patience=3, resume=False, plateau=(0.3, 1)), model=model)
    callbacks.on_train_begin()
    lrs = []
    for epoch, auc in enumerate([0.70, 0.72, 0.72, 0.71]):
        callbacks.on_epoch_end(epoch, {"val_auc": auc, "loss": 0.5})
        lrs.append(float(keras.ops.convert_to_numpy(model.optimizer.learning_rate)))
    expected = np.float32(0.01) * np.array([1.0, 1.0, 0.3, 0.09], np.float32)
    np.testing.assert_allclose(lrs, expected, rtol=1e-6)
    assert not model.stop_training  # early stopping (patience 3) has not fired yet


def test_default_schedule_is_plateau_with_a_wider_early_stopping_patience() -> None:
    from ctrflow.model.options import TrainerOptions

    config, trainer = ModelConfig(), TrainerOptions(data="d", output="o")
    assert config.lr_schedule == "plateau" and trainer.patience > config.plateau_patience
    with pytest.raises(ValueError, match="plateau_factor"):
        ModelConfig(plateau_factor=1.0)


def test_build_errors_are_explicit() -> None:
    wide_only = FeatureLayout(sparse=(SparseFeature("c", 3, wide_only=True),), dense=(), label="y")
    with pytest.raises(ValueError, match="non-wide_only"):
        build_model(wide_only, ModelConfig(model="deepfm"))
    with pytest.raises(ValueError, match="'context'"):
        build_model(LAYOUT, ModelConfig(hadamard_groups=("user", "context")))


# ---------------------------------------------------------------- serving


class Serving(tf.Module):
    """What the trainer exports: the model behind a typed serving signature."""

    def __init__(self, model: CTRModel, layout: FeatureLayout) -> None:
        super().__init__()
        self.model = model
        self.serve = tf.function(self._serve, input_signature=[feature_spec(layout)])

    def _serve(self, features: dict[str, tf.Tensor]) -> dict[str, tf.Tensor]:
        return {"logits": self.model(features, training=False),
                "probabilities": self.model.probabilities(features)}


def test_saved_model_roundtrip_gives_same_logits(tmp_path: Path) -> None:
    x = make_features(GLOBAL_LAYOUT, 64)
    model = model_for(GLOBAL_LAYOUT, model="deepfm", residual="gated", norm="batch", dropout=0.2,
                      hadamard_groups=("user", "item"), negative_keep_rate=0.5)
    model.fit(dataset(x, make_labels(x)), epochs=1, verbose=0)
    tf.saved_model.save(Serving(model, GLOBAL_LAYOUT), str(tmp_path / "export"))
    loaded = tf.saved_model.load(str(tmp_path / "export"))
    batch = make_features(GLOBAL_LAYOUT, 10, seed=3, tag_len=4)
    tensors = {k: tf.constant(v) for k, v in batch.items()}
    out = loaded.serve(tensors)
    np.testing.assert_allclose(out["logits"].numpy(), np_logits(model, batch), atol=1e-6)
    np.testing.assert_allclose(out["probabilities"].numpy(),
                               keras.ops.convert_to_numpy(model.probabilities(batch)), atol=1e-6)


# ----------------------------------------------------------------- config


def test_config_yaml_dict_roundtrip(tmp_path: Path) -> None:
    config = ModelConfig(model="wide_deep", hidden_units=(32, 16), hadamard_groups=("user", "item"),
                         wide_optimizer="ftrl", clipnorm=2.0)
    path = tmp_path / "model.yaml"
    path.write_text("model: wide_deep\nhidden_units: [32, 16]\nhadamard_groups: [user, item]\n"
                    "wide_optimizer: ftrl\nclipnorm: 2.0\n")
    assert ModelConfig.from_yaml(str(path)) == config
    assert ModelConfig.from_dict(config.to_dict()) == config
    with pytest.raises(ValueError, match="unknown ModelConfig keys"):
        ModelConfig.from_dict({"hiden_units": [8]})
    with pytest.raises(ValueError, match="residual"):
        ModelConfig(residual="dense")


def test_config_cli_flags_override_base() -> None:
    parser = argparse.ArgumentParser()
    ModelConfig.add_argparse_args(parser)
    flags = {a.dest for a in parser._actions} - {"help"}
    assert flags == {f.name for f in dataclasses.fields(ModelConfig)}
    args = parser.parse_args(["--model", "lr", "--hidden-units", "4", "2", "--jit-compile",
                              "--rdrop-alpha", "0.5"])
    config = ModelConfig.from_args(args, base=ModelConfig(embedding_dim=32))
    assert config == ModelConfig(model="lr", hidden_units=(4, 2), jit_compile=True,
                                 rdrop_alpha=0.5, embedding_dim=32)
