"""Permutation importance against an independent recomputation, and its evaluate outputs."""
from __future__ import annotations

import json

import numpy as np
import pytest

from ctrflow.pipeline.layout import DenseFeature, FeatureLayout, SparseFeature
from tests.test_warm_start_and_gate import rank_auc


def test_permutation_importance_is_the_auc_drop_of_each_shuffle():
    from ctrflow.model.importance import permutation_importance

    rng = np.random.default_rng(3)
    n = 2000
    a, noise, d = rng.integers(0, 10, n), rng.integers(0, 10, n), rng.normal(size=n).astype(np.float32)
    y = (rng.random(n) < 1 / (1 + np.exp(-(a - 4.5) / 2 - 0.5 * d))).astype(float)
    layout = FeatureLayout(sparse=(SparseFeature("a", 10), SparseFeature("noise", 10)),
                           dense=(DenseFeature("d"),), label="y")

    def predict(f):
        return 1 / (1 + np.exp(-(f["a"] - 4.5) / 2 - 0.5 * f["d"]))

    report = permutation_importance(predict, {"a": a, "noise": noise, "d": d}, y, layout, repeats=2, seed=7)
    base = rank_auc(y, predict({"a": a, "d": d}))
    assert report["base_auc"] == pytest.approx(base, abs=1e-12)
    check = np.random.default_rng(7)  # same draws, same order: a, a, noise, noise, d, d
    drops = {}
    for name in ("a", "noise", "d"):
        values = []
        for _ in range(2):
            perm = check.permutation(n)
            f = {"a": a, "d": d, name: {"a": a, "noise": noise, "d": d}[name][perm]}
            values.append(base - rank_auc(y, predict(f)))
        drops[name] = np.mean(values)
    for name, drop in drops.items():
        assert report["features"][name]["auc_drop"] == pytest.approx(drop, abs=1e-12)
    assert report["features"]["noise"]["auc_drop"] == 0.0
    assert list(report["features"])[0] == "a"


@pytest.mark.slow
def test_evaluate_writes_importance(clicks_run, tmp_path):
    from ctrflow.model import evaluate

    out = tmp_path / "evaluation"
    metrics = evaluate.run(["--model", clicks_run["model"], "--data", clicks_run["data"], "--output", str(out)])
    report = json.loads((out / "importance.json").read_text())
    assert report["rows"] == metrics["eval_rows"]
    positives = round(metrics["base_rate"] * metrics["eval_rows"])
    two_pairs = 2.0 / max(positives * (metrics["eval_rows"] - positives), 1)  # float32 noise may flip a tie
    assert report["base_auc"] == pytest.approx(metrics["auc"], abs=max(1e-6, two_pairs))
    assert set(report["features"]) == {"age", "spend", "city", "device", "tag", "city_x_device", "age__scaled"}
    assert (out / "importance.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
