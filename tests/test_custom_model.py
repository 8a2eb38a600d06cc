"""``--model package.module:function``: the caller's own Keras model on ctrflow's features (models.custom_model).

The builders are in tests/custom_model_example.py.
"""
from __future__ import annotations

import json
import os
from pathlib import Path

import keras
import numpy as np
import pytest

from ctrflow.common.errors import OptionsError, UserError
from ctrflow.model.config import ModelConfig
from ctrflow.model.models import CustomModelError, build_model, compile_model
from tests.test_models import LAYOUT, dataset, make_features, make_labels, softplus

SMALL = dict(embedding_dim=4, hidden_units=(8,), dropout=0.0, learning_rate=0.02)


@pytest.fixture(autouse=True)
def examples_importable(monkeypatch):
    """``custom_model_example`` importable by name, as a user's module on PYTHONPATH is."""
    monkeypatch.syspath_prepend(os.path.dirname(__file__))


def config_for(name: str, **options) -> ModelConfig:
    return ModelConfig(**{**SMALL, "model": f"custom_model_example:{name}", **options})


def test_functional_model_gives_the_logit_and_trains_with_ctrflow_losses() -> None:
    config = config_for("build")
    model = compile_model(build_model(LAYOUT, config), config)
    x = make_features(LAYOUT, 64)
    y = make_labels(x)
    assert model.linear is None and model.embedding is None  # the logit is all the custom model's
    np.testing.assert_array_equal(keras.ops.convert_to_numpy(model(x)),
                                  keras.ops.convert_to_numpy(model.custom({k: x[k] for k in model.custom_inputs})))
    z = keras.ops.convert_to_numpy(model(x)).astype("float64")[:, 0]
    logs = model.evaluate(dataset(x, y, batch=64), verbose=0, return_dict=True)
    np.testing.assert_allclose(logs["loss"], np.mean(softplus(z) - y * z), rtol=1e-5)  # ctrflow's log loss
    before = logs["loss"]
    model.fit(dataset(x, y), epochs=3, verbose=0)
    assert model.evaluate(dataset(x, y, batch=64), verbose=0, return_dict=True)["loss"] < before
    # R-Drop and the pairwise loss run on it as on the built-in models
    rdrop = config_for("build", rdrop_alpha=1.0, dropout=0.3)
    assert np.isfinite(compile_model(build_model(LAYOUT, rdrop), rdrop).train_on_batch(
        x, y, return_dict=True)["loss"])
    pairwise = config_for("build", loss="pairwise")
    pos, neg = make_features(LAYOUT, 16, seed=1), make_features(LAYOUT, 16, seed=2)
    assert np.isfinite(compile_model(build_model(LAYOUT, pairwise), pairwise).train_on_batch(
        {"pos": pos, "neg": neg}, np.zeros(16, "float32"), return_dict=True)["loss"])


def test_subclassed_model_takes_the_whole_feature_dict_and_a_batch_vector() -> None:
    config = config_for("build_subclassed")
    model = build_model(LAYOUT, config)
    x = make_features(LAYOUT, 8)
    table = model.custom.table.embeddings.numpy()[:, 0]
    assert model.custom_inputs is None
    np.testing.assert_allclose(keras.ops.convert_to_numpy(model(x))[:, 0], table[x["user"]], rtol=1e-6)


@pytest.mark.parametrize("spec, message", [
    ("no_such_module_xyz:build", r"cannot import no_such_module_xyz \(ModuleNotFoundError: .*PYTHONPATH"),
    ("custom_model_example:missing", "custom_model_example has no attribute missing"),
    ("custom_model_example:NOT_CALLABLE", r"NOT_CALLABLE is not callable \(a int\)"),
    ("custom_model_example:not_a_model", "returned a Dense, not a keras.Model"),
    ("custom_model_example:two_logits", r"one logit per row .* for 2 rows it returned shape \(2, 2\)"),
    ("custom_model_example:unknown_input", r"inputs \['no_such_feature'\] are not ctrflow features"),
])
def test_a_bad_builder_is_one_user_error(spec: str, message: str) -> None:
    with pytest.raises(CustomModelError, match=message) as caught:
        build_model(LAYOUT, ModelConfig(model=spec, **SMALL))
    assert isinstance(caught.value, UserError) and "\n" not in str(caught.value)
    assert str(caught.value).startswith(f"--model {spec}: ")


def test_config_accepts_a_builder_path_and_refuses_what_needs_the_linear_part() -> None:
    assert ModelConfig(model="my_package.models:build").is_custom
    assert not ModelConfig(model="dcnv2").is_custom
    with pytest.raises(OptionsError, match="expected one of .* or package.module:function"):
        ModelConfig(model="my_package.models")
    with pytest.raises(OptionsError, match="wide_optimizer needs ctrflow's linear part"):
        ModelConfig(model="my_package.models:build", wide_optimizer="ftrl")


@pytest.mark.slow
def test_custom_model_ensemble_trains_calibrates_exports_and_warm_starts(clicks_run, tmp_path: Path) -> None:
    from ctrflow.model import train
    from ctrflow.model.warm_start import warm_start
    from ctrflow.pipeline.layout import FeatureLayout
    from ctrflow.schemas import load_schema
    from tests.test_dcnv2 import check_export_scores_raw_rows, keras_model_of

    out = str(tmp_path / "custom")
    metrics = train.run(["--data", clicks_run["data_root"], "--output", out, "--model", "custom_model_example:build",
                         "--embedding-dim", "8", "--hidden-units", "16", "--epochs", "4", "--batch-size", "128",
                         "--verbose", "0", "--ensemble", "2"])
    assert metrics["auc"] > 0.6, metrics["auc"]
    assert all(m["platt"] is not None for m in metrics["members"])  # each member calibrated on the holdout
    saved = json.loads(Path(out, "config.json").read_text())["model"]
    assert saved["model"] == "custom_model_example:build"
    layout = FeatureLayout.from_json(Path(clicks_run["data"], "layout.json").read_text())
    check_export_scores_raw_rows(clicks_run, out, layout)

    trained = keras_model_of(out, layout, member=0)  # what --warm-start copies
    config = ModelConfig.from_dict(saved)
    fresh = build_model(layout, config)
    report = warm_start(fresh, layout, config, load_schema(clicks_run["schema"]), clicks_run["data"], out)
    assert report["fresh_weights"] == [] and report["copied_weights"] == len(fresh.weights)
    for old, new in zip(trained.weights, fresh.weights):
        np.testing.assert_array_equal(old.numpy(), new.numpy())


def test_warm_start_maps_rows_only_for_tables_with_the_layouts_row_count() -> None:
    """A custom ``keras.layers.Embedding`` is ``.../embeddings`` too: its rows must not be mapped by token."""
    from types import SimpleNamespace

    from ctrflow.model.warm_start import _table_kind, table_rows
    from ctrflow.pipeline.layout import FeatureLayout, SparseFeature

    layout = FeatureLayout(sparse=(SparseFeature("city", 12), SparseFeature("device", 5),
                                   SparseFeature("city_x_device", 50, wide_only=True)), dense=(), label="clicked")
    assert (table_rows(layout, wide=False), table_rows(layout, wide=True)) == (17, 67)

    def weight(path: str, rows: int):
        return SimpleNamespace(path=path, shape=(rows, 8))

    assert _table_kind(weight("ctr_model/embedding/embeddings", 17), layout) is False
    assert _table_kind(weight("ctr_model/linear/embeddings", 67), layout) is True
    assert _table_kind(weight("my_model/bias_per_id/embeddings", 12), layout) is None  # the user's own table
    assert _table_kind(weight("ctr_model/dense/kernel", 17), layout) is None
