"""``ctrflow evaluate`` and the exact curve metrics behind its plots."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from ctrflow.model import metrics as mt


def test_roc_curve_area_is_the_auc() -> None:
    rng = np.random.default_rng(0)
    y = rng.random(2000) < 0.3
    s = np.round(rng.normal(size=2000) + y, 1)  # rounded: many ties
    fpr, tpr = mt.roc_curve(y, s)
    assert fpr[0] == tpr[0] == 0 and fpr[-1] == tpr[-1] == 1
    assert np.all(np.diff(fpr) >= 0) and np.all(np.diff(tpr) >= 0)
    area = float(np.sum(np.diff(fpr) * (tpr[1:] + tpr[:-1]) / 2))  # trapezoids = ties counted half
    assert area == pytest.approx(mt.roc_auc(y, s), abs=1e-12)


def test_calibration_bins_are_equal_count_and_exact() -> None:
    p = np.linspace(0.01, 0.99, 1000)
    y = (np.random.default_rng(1).random(1000) < p).astype(float)
    bins = mt.calibration_bins(y, p, bins=10)
    assert [b["count"] for b in bins] == [100] * 10
    assert bins[0]["mean_prediction"] == pytest.approx(p[:100].mean())
    assert bins[-1]["observed_rate"] == pytest.approx(y[-100:].mean())
    assert sum(b["observed_rate"] * b["count"] for b in bins) == pytest.approx(y.sum())


@pytest.mark.slow
def test_evaluate_reproduces_training_metrics_and_writes_plots(clicks_run, tmp_path: Path) -> None:
    from ctrflow.model import evaluate

    out = tmp_path / "evaluation"
    metrics = evaluate.run(["--model", clicks_run["model"], "--data", clicks_run["data"], "--output", str(out),
                            "--batch-size", "300", "--bins", "5"])
    trained = clicks_run["metrics"]
    # the export's score_transformed signature scores exactly what training evaluated
    assert metrics["eval_rows"] == trained["eval_rows"]
    # two paths (Keras predict in training, the SavedModel signature here) may differ by float32 noise, which can
    # split or join an exact tie between two rows' scores: allow two (positive, negative) pairs of the AUC
    assert metrics["auc"] == pytest.approx(trained["auc"], abs=max(1e-6, _two_pairs(metrics)))
    assert metrics["logloss"] == pytest.approx(trained["logloss"], abs=1e-5)
    assert metrics["calibration"] == pytest.approx(metrics["mean_prediction"] / metrics["base_rate"])
    assert len(metrics["calibration_bins"]) == 5
    assert json.loads((out / "metrics.json").read_text())["auc"] == metrics["auc"]
    for name in ("roc.png", "calibration.png"):
        assert (out / name).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


@pytest.mark.slow
def test_evaluate_default_output_is_beside_the_model(clicks_run) -> None:
    from ctrflow.model import evaluate

    metrics = evaluate.run(["--model", clicks_run["model"], "--data", clicks_run["data"], "--split", "train"])
    out = Path(clicks_run["model"]) / "evaluation" / "train"
    assert (out / "metrics.json").exists() and (out / "roc.png").exists()
    assert metrics["split"] == "train" and metrics["eval_rows"] > 0


def _two_pairs(metrics: dict) -> float:
    """Two (positive, negative) pairs of an AUC over ``metrics``' eval rows."""
    positives = round(metrics["base_rate"] * metrics["eval_rows"])
    return 2.0 / max(positives * (metrics["eval_rows"] - positives), 1)
