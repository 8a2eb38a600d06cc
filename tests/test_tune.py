"""``ctrflow tune``: the settings draw, and a 2-trial run writing its table and best flags."""
from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest

from ctrflow.model.config import ModelConfig
from ctrflow.model.tune import GRID, draw_settings, flags_of


def test_draw_starts_with_the_base_settings_and_never_repeats() -> None:
    base = ModelConfig(learning_rate=0.02, dropout=0.2)
    settings = draw_settings(base, 8, seed=0)
    assert settings[0] == {"learning_rate": 0.02, "embedding_dim": 64, "row_weight_decay": 0.5, "dropout": 0.2}
    assert len(settings) == 8 and len({tuple(s.values()) for s in settings}) == 8
    assert all(s[k] in GRID[k] for s in settings[1:] for k in GRID)
    assert draw_settings(base, 8, seed=0) == settings  # seeded
    assert len(draw_settings(base, 1000, seed=0)) == 3 ** 4 + 1  # the whole grid, then stops
    assert flags_of(settings[0]) == "--learning-rate 0.02 --embedding-dim 64 --row-weight-decay 0.5 --dropout 0.2"


@pytest.mark.slow
def test_tune_runs_trials_and_ranks_them_on_validation(clicks_run, tmp_path: Path) -> None:
    from ctrflow.model import tune

    out = tmp_path / "tune"
    rows = tune.run(["--data", clicks_run["data_root"], "--output", str(out), "--epochs", "1", "--batch-size", "256",
                     "--verbose", "0", "--trials", "2", "--cache", "--ensemble", "1"])  # one model a trial
    assert [r["trial"] for r in rows] == [1, 2] and rows[0]["flags"] == flags_of(draw_settings(ModelConfig(), 2, 0)[0])
    with open(out / "trials.csv") as f:
        table = list(csv.DictReader(f))
    assert [float(r["valid_auc"]) for r in table] == [r["valid_auc"] for r in rows]
    assert json.loads((out / "trials.json").read_text()) == rows
    best = json.loads((out / "best.json").read_text())
    assert best["valid_auc"] == max(r["valid_auc"] for r in rows) and best["selected_on"] == "valid"
    for r in rows:  # each trial is a complete training run with its own export and metrics
        metrics = json.loads(Path(r["model_dir"], "metrics.json").read_text())
        assert metrics["valid"]["auc"] == r["valid_auc"] and metrics["auc"] == r["eval_auc"]
        assert Path(r["model_dir"], "export", "saved_model.pb").exists()
        config = json.loads(Path(r["model_dir"], "config.json").read_text())["model"]
        assert config["embedding_dim"] == r["embedding_dim"] and config["dropout"] == r["dropout"]
