"""DCN-V2 (``--model dcnv2``): the cross layer against numpy, stacked vs parallel, options, a real train + export."""
from __future__ import annotations

import json
import os
from pathlib import Path

import keras
import numpy as np
import pandas as pd
import pytest
import tensorflow as tf

from ctrflow.common.errors import OptionsError
from ctrflow.model.config import ModelConfig
from ctrflow.model.layers import CrossNetwork
from ctrflow.model.models import build_model, compile_model
from tests.test_models import LAYOUT, dataset, make_features, make_labels

SMALL = dict(embedding_dim=4, hidden_units=(8, 6), dropout=0.0, learning_rate=0.02)
# LAYOUT's cross input: 3 embedded fields (user_x_item is wide-only) x 4 + 2 dense values
WIDTH = 3 * 4 + 2


def numpy_cross(x0: np.ndarray, weights: list[np.ndarray], rank: int) -> np.ndarray:
    """x_{l+1} = x0 * (W_l x_l + b_l) + x_l, column-vector form per row, W_l = U_l V_l^T when low rank."""
    x, i = x0, 0
    while i < len(weights):
        if rank:
            u, v, b = weights[i:i + 3]
            w = u @ v.T
            i += 3
        else:
            k, b = weights[i:i + 2]
            w = k.T  # stored as W^T, Dense's convention
            i += 2
        x = x0 * (np.einsum("ij,bj->bi", w, x) + b) + x
    return x


@pytest.mark.parametrize("rank", [0, 2])
def test_cross_layers_equal_the_formula_in_numpy(rank: int) -> None:
    rng = np.random.default_rng(0)
    x0 = rng.normal(size=(5, 6)).astype("float32")
    cross = CrossNetwork(num_layers=3, rank=rank)
    cross(x0)
    fixed = [rng.normal(scale=0.5, size=w.shape).astype("float32") for w in cross.get_weights()]
    cross.set_weights(fixed)
    shapes = [w.shape for w in fixed]
    assert shapes == ([(6, 2), (6, 2), (6,)] * 3 if rank else [(6, 6), (6,)] * 3)
    got = keras.ops.convert_to_numpy(cross(x0))
    np.testing.assert_allclose(got, numpy_cross(x0.astype("float64"), fixed, rank), rtol=1e-5, atol=1e-5)


def test_cross_rank_must_be_below_the_input_width() -> None:
    with pytest.raises(OptionsError, match="cross_rank 6 is not below the cross input width 6"):
        CrossNetwork(rank=6)(np.zeros((2, 6), "float32"))


@pytest.mark.parametrize("structure", ["stacked", "parallel"])
def test_stacked_and_parallel_structures(structure: str) -> None:
    config = ModelConfig(model="dcnv2", cross_structure=structure, cross_layers=2, **SMALL)
    model = build_model(LAYOUT, config)
    x = make_features(LAYOUT, 16)
    assert model(x).shape == (16, 1)
    assert model.cross.kernels[0].shape == (WIDTH, WIDTH) and model.fm is None
    first_dense = model.dnn.blocks[0].dense.kernel
    assert first_dense.shape == (WIDTH, 8)  # both feed the DNN a [batch, WIDTH] input
    head = model.deep_head.kernel.shape
    assert head == ((6, 1) if structure == "stacked" else (WIDTH + 6, 1))
    # the logit is linear + head(structure) of the cross network and DNN on the same x0
    fields = model.embedding(x)
    x0 = model._deep_input(fields, x)
    deep = (model.dnn(model.cross(x0)) if structure == "stacked"
            else keras.ops.concatenate([model.cross(x0), model.dnn(x0)], axis=1))
    expected = model.linear(x) + model.deep_head(deep)
    np.testing.assert_allclose(keras.ops.convert_to_numpy(model(x)), keras.ops.convert_to_numpy(expected),
                               rtol=1e-6, atol=1e-6)


def test_low_rank_has_the_factored_weights() -> None:
    config = ModelConfig(model="dcnv2", cross_rank=3, cross_layers=2, **SMALL)
    model = build_model(LAYOUT, config)
    names = [w.path for w in model.weights if "/cross/" in w.path]
    assert names == ["dcnv2/cross/u_0", "dcnv2/cross/v_0", "dcnv2/cross/bias_0",
                     "dcnv2/cross/u_1", "dcnv2/cross/v_1", "dcnv2/cross/bias_1"]
    assert [tuple(w.shape) for w in model.cross.kernels[0]] == [(WIDTH, 3), (WIDTH, 3)]


@pytest.mark.parametrize("options", [
    dict(residual="additive", rdrop_alpha=1.0, dropout=0.3, cross_structure="stacked"),
    dict(residual="gated", norm="layer", hadamard_groups=("user", "item"), cross_rank=2),
    dict(loss="pairwise"),
    dict(wide_optimizer="ftrl", kernel_l2=1e-3),
])
def test_training_options_apply(options: dict) -> None:
    config = ModelConfig(**{**SMALL, "model": "dcnv2", **options})
    model = compile_model(build_model(LAYOUT, config), config)
    if config.loss == "pairwise":
        pos, neg = make_features(LAYOUT, 32, seed=1), make_features(LAYOUT, 32, seed=2)
        logs = model.train_on_batch({"pos": pos, "neg": neg}, np.zeros(32, "float32"), return_dict=True)
        assert np.isfinite(logs["loss"])
        return
    x = make_features(LAYOUT, 128)
    y = make_labels(x)
    before = model.evaluate(dataset(x, y, batch=128), verbose=0, return_dict=True)["loss"]
    model.fit(dataset(x, y), epochs=2, verbose=0)
    assert model.evaluate(dataset(x, y, batch=128), verbose=0, return_dict=True)["loss"] < before
    if config.kernel_l2:  # the cross kernels are regularised as the DNN's are
        kernels = list(model.cross.kernels) + [b.dense.kernel for b in model.dnn.blocks]
        expected = config.kernel_l2 * sum(np.sum(np.square(k.numpy().astype("float64"))) for k in kernels)
        np.testing.assert_allclose(sum(float(v) for v in model.losses), expected, rtol=1e-5)


def test_config_validation() -> None:
    assert ModelConfig(model="dcnv2", cross_structure="stacked", cross_rank=4).cross_rank == 4
    for bad, message in [
        (dict(cross_layers=0), "cross_layers must be >= 1"),
        (dict(cross_rank=-1), "cross_rank must be >= 0"),
        (dict(model="deepfm", cross_layers=2), "only model dcnv2 takes cross_layers"),
        (dict(model="lr", cross_rank=2, cross_structure="stacked"), "only model dcnv2 takes cross_structure, "
                                                                    "cross_rank"),
        (dict(model="dcn"), "model='dcn'; expected one of"),
    ]:
        with pytest.raises(OptionsError, match=message):
            ModelConfig(**{"model": "dcnv2", **bad})
    with pytest.raises(ValueError, match="cross_structure='serial'"):
        ModelConfig(model="dcnv2", cross_structure="serial")


def test_flags() -> None:
    from ctrflow.model.train import parse_options

    _, config = parse_options(["--data", "d", "--output", "o", "--model", "dcnv2", "--cross-layers", "2",
                               "--cross-structure", "stacked", "--cross-rank", "4"])
    assert (config.model, config.cross_layers, config.cross_structure, config.cross_rank) == ("dcnv2", 2,
                                                                                              "stacked", 4)
    with pytest.raises(SystemExit):
        parse_options(["--data", "d", "--output", "o", "--model", "dcnv2", "--cross-structure", "serial"])


# ------------------------------------------------------------------ end to end


def keras_model_of(model_dir: str, layout, member: int | None = None):
    """The trained model rebuilt from MODEL_DIR's config.json and final weights: what the export serves (the mean
    of the ensemble's members), or ``member`` k alone."""
    from ctrflow.model.ensemble import SeedEnsemble
    from ctrflow.model.warm_start import member_weight_files, previous_config

    members = []
    for path in member_weight_files(model_dir):
        members.append(build_model(layout, previous_config(model_dir)))
        members[-1].load_weights(path)
    if member is not None:
        return members[member]
    return members[0] if len(members) == 1 else SeedEnsemble(members)


def check_export_scores_raw_rows(clicks_run, model_dir: str, layout) -> np.ndarray:
    """The export's serving_default on raw text rows = the Keras model on their transform; returns the scores."""
    import tensorflow_transform as tft

    from ctrflow.model.export import load
    from ctrflow.model.inputs import model_features
    from tests.test_score_e2e import _raw_inputs

    df = clicks_run["eval_df"].head(200)
    text = {c: tf.constant(np.array(["NA" if pd.isna(v) else str(v) for v in df[c]], object))
            for c in ("age", "spend", "city", "device", "tag")}
    served = load(model_dir).signature("serving_default")(**text)["score"].numpy()
    model = keras_model_of(model_dir, layout)
    transformed = tft.TFTransformOutput(clicks_run["data"]).transform_features_layer()(_raw_inputs(df))
    expected = model.probabilities(model_features(transformed, layout)).numpy().reshape(-1)
    assert served.shape == (len(df),) and np.all((served > 0) & (served < 1))
    np.testing.assert_allclose(served, expected, rtol=1e-5, atol=1e-6)
    # what `ctrflow score` calls first: the model part compiled by XLA, on typed raw values
    compiled = load(model_dir).signature("batch_score_and_ids")(**_raw_inputs(df))["score"].numpy()
    np.testing.assert_allclose(compiled, expected, rtol=1e-5, atol=1e-6)
    return served


@pytest.mark.slow
def test_dcnv2_trains_exports_and_warm_starts(clicks_run, tmp_path: Path) -> None:
    from ctrflow.model import train
    from ctrflow.model.warm_start import warm_start
    from ctrflow.pipeline.layout import FeatureLayout
    from ctrflow.schemas import load_schema

    out = str(tmp_path / "dcnv2")
    metrics = train.run(["--data", clicks_run["data_root"], "--output", out, "--model", "dcnv2",
                         "--cross-structure", "stacked", "--cross-rank", "4", "--cross-layers", "2",
                         "--residual", "additive", "--embedding-dim", "8", "--hidden-units", "32", "16",
                         "--epochs", "4", "--batch-size", "128", "--verbose", "0", "--ensemble", "1"])
    assert metrics["auc"] > 0.6, metrics["auc"]
    assert metrics["platt"] is not None  # calibrated on the validation holdout
    saved = json.loads(Path(out, "config.json").read_text())["model"]
    assert (saved["model"], saved["cross_structure"], saved["cross_rank"]) == ("dcnv2", "stacked", 4)
    layout = FeatureLayout.from_json(Path(clicks_run["data"], "layout.json").read_text())
    check_export_scores_raw_rows(clicks_run, out, layout)

    # warm start: every weight (the cross network's too) comes from the trained model
    trained = keras_model_of(out, layout, member=0)  # what --warm-start copies
    config = ModelConfig.from_dict(saved)
    fresh = build_model(layout, config)
    report = warm_start(fresh, layout, config, load_schema(clicks_run["schema"]), clicks_run["data"], out)
    assert report["fresh_weights"] == [] and report["copied_weights"] == len(fresh.weights)
    for old, new in zip(trained.cross.weights, fresh.cross.weights):
        np.testing.assert_array_equal(old.numpy(), new.numpy())
    assert os.path.exists(os.path.join(out, "export", "saved_model.pb"))
