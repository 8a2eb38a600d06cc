"""ctrflow monitor: scores joined with labels by id, metrics against independent numpy computations."""
from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from tests.test_warm_start_and_gate import rank_auc

DATES = ["2026-11-20", "2026-11-21"]


def _independent_psi(reference: dict, scores: np.ndarray) -> float:
    """PSI written out from its definition (floor 1e-4), bins edges[i-1] <= s < edges[i]."""
    edges = np.asarray(reference["edges"])
    current = np.array([((scores >= lo) & (scores < hi)).sum()
                        for lo, hi in zip(np.r_[-np.inf, edges], np.r_[edges, np.inf])], float)
    base = np.asarray(reference["counts"], float)
    p, q = np.maximum(base / base.sum(), 1e-4), np.maximum(current / current.sum(), 1e-4)
    return float(((q - p) * np.log(q / p)).sum())


@pytest.fixture(scope="module")
def monitored(clicks_run, tmp_path_factory):
    """Two scored dates written as `ctrflow score` lays them out, and their labels with every kind of flaw."""
    root = tmp_path_factory.mktemp("monitor")
    rng = np.random.default_rng(5)
    expected = {}
    for i, date in enumerate(DATES):
        ids = np.arange(1000 * i, 1000 * i + 400)
        scores = np.clip(rng.beta(2, 5, len(ids)) + 0.1 * i, 0, 1).astype(np.float32)
        part = root / "scores" / f"date={date}"
        part.mkdir(parents=True)
        pq.write_table(pa.table({"request_id": ids, "score": scores}), part / "part-00000.parquet")
        (part / "manifest.json").write_text(json.dumps({"model": clicks_run["model"] + "/export"}))
        labels = (rng.random(len(ids)) < scores).astype(int)
        lab = pd.DataFrame({"request_id": ids, "clicked": labels.astype(str)})
        lab = lab.iloc[30:]  # 30 scores never get a label
        extra = pd.DataFrame({"request_id": [999_999, 999_998], "clicked": ["1", "0"]})  # labels without a score
        dup = lab.iloc[:5].assign(clicked="1" if i == 0 else "0")  # duplicate ids: the first one counts
        bad = pd.DataFrame({"request_id": [777_777], "clicked": ["maybe"]})
        (root / "labels" / date).mkdir(parents=True)
        pd.concat([lab, extra, dup, bad]).to_csv(root / "labels" / date / "labels.csv", index=False)
        y, s = labels[30:], scores[30:].astype(np.float64)
        expected[date] = {"auc": rank_auc(y, s), "matched": len(y), "calibration": s.mean() / y.mean(),
                          "logloss": -np.mean(y * np.log(np.clip(s, 1e-7, 1 - 1e-7))
                                              + (1 - y) * np.log(np.clip(1 - s, 1e-7, 1 - 1e-7))),
                          "scores": scores.astype(np.float64)}
    return root, expected


def _run(root, *extra):
    from ctrflow.cli import monitor

    return monitor.run(["--scores", str(root / "scores"), "--labels", str(root / "labels" / "{date}" / "*.csv"),
                        "--date", f"{DATES[0]}:{DATES[1]}", "--output", str(root / "out"), *extra])


@pytest.mark.slow
def test_monitor_joins_by_id_and_matches_independent_metrics(monitored, clicks_run):
    root, expected = monitored
    trend = _run(root)
    with open(clicks_run["model"] + "/export/assets.extra/model_info.json") as f:
        info = json.load(f)
    for date in DATES:
        got, want = trend[date], expected[date]
        assert got["matched_rows"] == want["matched"] == 370
        assert got["unmatched_score_rows"] == 30 and got["unmatched_label_rows"] == 2
        assert got["duplicate_label_ids"] == 5 and got["invalid_label_rows"] == 1
        assert got["auc"] == pytest.approx(want["auc"], abs=1e-12)
        assert got["calibration"] == pytest.approx(want["calibration"], rel=1e-9)
        assert got["logloss"] == pytest.approx(want["logloss"], rel=1e-6)
        assert got["psi"] == pytest.approx(_independent_psi(info["eval_score_profile"], want["scores"]), rel=1e-9)
        assert json.loads((root / "out" / f"date={date}" / "metrics.json").read_text())["auc"] == got["auc"]
    page = (root / "out" / "index.html").read_text()
    assert "auc.png" in page and (root / "out" / "auc.png").stat().st_size > 1000
    assert not math.isnan(trend[DATES[1]]["psi"])


@pytest.mark.slow
def test_fail_on_thresholds_exit_non_zero_after_writing(monitored):
    from ctrflow import cli

    root, expected = monitored
    args = ["monitor", "--scores", str(root / "scores"), "--labels", str(root / "labels" / "{date}" / "*.csv"),
            "--date", DATES[0], "--output", str(root / "out2")]
    assert cli.main(args + ["--fail-on", "auc<0.01,unmatched_rate>0.5"]) == 0
    assert cli.main(args + ["--fail-on", f"auc<{expected[DATES[0]]['auc'] + 0.01}"]) == 4
    assert (root / "out2" / "index.html").exists()
    assert cli.main(args + ["--fail-on", "auc<<1"]) == 2  # a malformed rule: one line, usage error
    assert cli.main(args + ["--fail-onn", "auc<0.5"]) == 2  # unknown flags stop too


@pytest.mark.slow
def test_score_job_profiles_the_score_distribution_into_drift_json(clicks_run, tmp_path):
    from ctrflow.beam_jobs.scoring import job as score

    score.run(["--model", clicks_run["model"], "--input", clicks_run["eval_csv"], "--date", "2026-11-21",
               "--output", str(tmp_path / "scores")])
    from ctrflow.pipeline.artifacts import live_dir
    part = Path(live_dir(str(tmp_path / "scores" / "date=2026-11-21")))
    prediction = json.loads((part / "drift.json").read_text())["prediction"]
    scores = pq.read_table(sorted(part.glob("part-*.parquet"))).column("score").to_numpy().astype(np.float64)
    with open(clicks_run["model"] + "/export/assets.extra/model_info.json") as f:
        reference = json.load(f)["eval_score_profile"]
    edges = np.r_[-np.inf, reference["edges"], np.inf]
    assert prediction["counts"] == [int(((scores >= lo) & (scores < hi)).sum()) for lo, hi in zip(edges, edges[1:])]
    assert prediction["rows"] == len(scores) == 1000
    assert prediction["mean_score"] == pytest.approx(scores.mean(), rel=1e-6)
    assert prediction["psi"] == pytest.approx(_independent_psi(reference, scores), rel=1e-9, abs=1e-12)
    assert prediction["psi"] < 0.01  # the eval rows themselves: the same distribution as the reference
