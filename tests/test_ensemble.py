"""``--ensemble K``: one exported SavedModel serving the mean of K seeds' (Platt-scaled) probabilities."""
from __future__ import annotations

import glob
import json
import os
from pathlib import Path

import numpy as np
import pytest
import tensorflow as tf

from ctrflow.common.errors import OptionsError
from ctrflow.model.options import TrainerOptions


def test_ensemble_size_must_be_positive() -> None:
    with pytest.raises(OptionsError, match="--ensemble must be > 0"):
        TrainerOptions(data="d", output="o", ensemble=0)


@pytest.mark.slow
def test_export_serves_the_mean_of_its_members(clicks_run, tmp_path: Path) -> None:
    import tensorflow_transform as tft

    from ctrflow.model import train
    from ctrflow.model.config import ModelConfig
    from ctrflow.model.inputs import model_features
    from ctrflow.model.models import build_model
    from ctrflow.pipeline.layout import FeatureLayout

    out = tmp_path / "ens"
    metrics = train.run(["--data", clicks_run["data_root"], "--output", str(out), "--epochs", "1", "--batch-size",
                         "256", "--verbose", "0", "--ensemble", "2"])
    members = metrics["members"]
    assert [m["seed"] for m in members] == [42, 43] and members[0]["platt"] == metrics["platt"]
    data = clicks_run["data"]
    layout = FeatureLayout.from_json(Path(data, "layout.json").read_text())
    config = ModelConfig.from_dict(json.loads((out / "config.json").read_text())["model"])
    records = [r.numpy() for f in sorted(glob.glob(os.path.join(data, "eval", "*.gz")))
               for r in tf.data.TFRecordDataset(f, compression_type="GZIP")]
    spec = tft.TFTransformOutput(data).transformed_feature_spec()
    features = model_features(tf.io.parse_example(tf.constant(records), spec), layout)

    member_probs = []
    for m, weights in zip(members, [out / "checkpoints" / "final.weights.h5",
                                    out / "members" / "1" / "checkpoints" / "final.weights.h5"]):
        model = build_model(layout, config)
        model.load_weights(str(weights))
        z = model(features, training=False).numpy().reshape(-1).astype(np.float64)
        a, b = m["platt"]["scale"], m["platt"]["bias"]
        member_probs.append(1 / (1 + np.exp(-(a * z + b))))
    assert np.abs(member_probs[0] - member_probs[1]).max() > 1e-4  # two different models
    expected = np.mean(member_probs, axis=0)

    served = tf.saved_model.load(str(out / "export")).signatures["score_transformed"]
    got = served(examples=tf.constant(records))["score"].numpy()
    np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-6)
    from ctrflow.model import metrics as mt

    labels = tf.io.parse_example(tf.constant(records), spec)[layout.label].numpy().reshape(-1)
    assert metrics["auc"] == pytest.approx(mt.roc_auc(labels, expected), abs=1e-6)
