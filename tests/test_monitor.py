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


def _copy_partition_as(root: Path, date: str, fmt: str, dest: Path) -> None:
    """The date's Parquet scores rewritten as `ctrflow score --output-format csv|tfrecord` lays them out."""
    src = root / "scores" / f"date={date}"
    part = dest / f"date={date}"
    part.mkdir(parents=True)
    (part / "manifest.json").write_text((src / "manifest.json").read_text())
    df = pq.read_table(src / "part-00000.parquet").to_pandas()
    if fmt == "csv":  # two shards, a header in each (WriteToText's header)
        df.iloc[:150].to_csv(part / "part-00000-of-00002.csv", index=False)
        df.iloc[150:].to_csv(part / "part-00001-of-00002.csv", index=False)
        return
    import tensorflow as tf

    with tf.io.TFRecordWriter(str(part / "part-00000-of-00001.tfrecord.gz"), options="GZIP") as w:
        for rid, s in zip(df["request_id"], df["score"]):
            w.write(tf.train.Example(features=tf.train.Features(feature={
                "request_id": tf.train.Feature(int64_list=tf.train.Int64List(value=[int(rid)])),
                "score": tf.train.Feature(float_list=tf.train.FloatList(value=[float(s)])),
                "model_version": tf.train.Feature(bytes_list=tf.train.BytesList(value=[b"v1"]))})).SerializeToString())


@pytest.mark.slow
@pytest.mark.parametrize("fmt", ["csv", "tfrecord"])
def test_scores_in_csv_and_tfrecord_give_the_parquet_figures(monitored, fmt, tmp_path):
    from ctrflow.cli import monitor

    root, expected = monitored
    date = DATES[0]
    _copy_partition_as(root, date, fmt, tmp_path / "scores")
    got = monitor.run(["--scores", str(tmp_path / "scores"), "--labels", str(root / "labels" / "{date}" / "*.csv"),
                       "--date", date, "--output", str(tmp_path / "out")])[date]
    want = expected[date]
    assert got["matched_rows"] == want["matched"] and got["scored_rows"] == 400
    assert got["unmatched_label_rows"] == 2 and got["invalid_label_rows"] == 1
    assert got["auc"] == pytest.approx(want["auc"], abs=1e-12)
    assert got["calibration"] == pytest.approx(want["calibration"], rel=1e-6)  # float32 scores through CSV text


@pytest.fixture(scope="module")
def census_scored(tmp_path_factory):
    """A census model (no id column) and 600 adult.test rows scored by the real job: the row locator."""
    import os

    from ctrflow.beam_jobs.preprocess import job as preprocess
    from ctrflow.beam_jobs.scoring import job as score
    from ctrflow.model import train

    repo = Path(__file__).resolve().parents[1]
    root = tmp_path_factory.mktemp("census_monitor")
    with open(repo / "data" / "census" / "adult.data") as f:
        (root / "train.csv").write_text("".join(next(f) for _ in range(4000)))
    with open(repo / "data" / "census" / "adult.test") as f:
        lines = [next(f) for _ in range(601)]  # the "|1x3" comment line + 600 rows
    lines[5] = lines[5].replace("<=50K.", "?").replace(">50K.", "?")  # a label not known yet (a null marker)
    (root / "day").mkdir()
    (root / "day" / "test.csv").write_text("".join(lines))
    schema = str(repo / "schemas" / "census.yaml")
    preprocess.run(["--schema", schema, "--train", str(root / "train.csv"), "--output", str(root / "data")])
    train.run(["--data", str(root / "data"), "--output", str(root / "model"), "--epochs", "1", "--batch-size", "256",
               "--verbose", "0", "--ensemble", "1"])
    cwd = os.getcwd()
    os.chdir(root)  # a relative --input: the locator keeps the pattern's spelling, monitor compares absolute paths
    try:
        for fmt in ("parquet", "tfrecord"):
            score.run(["--model", str(root / "model"), "--input", "day/test.csv", "--date", "2026-11-21",
                       "--output", str(root / f"scores_{fmt}"), "--output-format", fmt])
    finally:
        os.chdir(cwd)
    from ctrflow.schemas import load_schema
    names = [c.name for c in load_schema(schema).columns]
    raw = (root / "day" / "test.csv").read_bytes()
    starts, pos = [], 0
    for line in raw.splitlines(keepends=True):
        starts.append(pos)
        pos += len(line)
    df = pd.read_csv(root / "day" / "test.csv", header=None, names=names, skiprows=1, dtype=str,
                     keep_default_na=False, skipinitialspace=True)
    df["offset"] = starts[1:]
    return {"root": root, "df": df}


def _census_expected(census_scored) -> pd.DataFrame:
    """Scores joined to the raw rows by byte offset, labels read independently (strip, '>50K.' positive)."""
    from ctrflow.pipeline.artifacts import live_dir

    part = Path(live_dir(str(census_scored["root"] / "scores_parquet" / "date=2026-11-21")))
    scores = pq.read_table(sorted(part.glob("part-*.parquet"))).to_pandas()
    df = census_scored["df"].merge(scores, left_on="offset", right_on="source_offset")
    label = df["income_bracket"].str.strip()
    df = df[label != "?"].copy()
    df["y"] = df["income_bracket"].str.strip().isin([">50K", ">50K."]).astype(int)
    return df


def _check_census(got: dict, want: pd.DataFrame) -> None:
    y, s = want["y"].to_numpy(), want["score"].to_numpy(np.float64)
    assert got["matched_rows"] == len(want) == 599 and got["scored_rows"] == 600
    assert got["invalid_label_rows"] == 1 and got["unmatched_score_rows"] == 1
    assert got["auc"] == pytest.approx(rank_auc(y, s), abs=1e-12)
    assert got["calibration"] == pytest.approx(s.mean() / y.mean(), rel=1e-9)


@pytest.mark.slow
def test_census_without_id_joins_scores_on_the_row_locator_in_the_schema_format(census_scored):
    """Labels = the scored file itself (no header, comment line, ', ' fields, '?' null): read in the schema's format."""
    from ctrflow.cli import monitor

    root = census_scored["root"]
    want = _census_expected(census_scored)
    for fmt in ("parquet", "tfrecord"):
        got = monitor.run(["--scores", str(root / f"scores_{fmt}"), "--labels", str(root / "day" / "test.csv"),
                           "--date", "2026-11-21", "--output", str(root / f"mon_{fmt}"), "--slice-by", "gender,race",
                           "--slice-top", "3", "--slice-min-rows", "30"])["2026-11-21"]
        _check_census(got, want)
        races = want["race"].str.strip()
        top3 = races.value_counts().sort_index().sort_values(ascending=False, kind="stable").index[:3]
        key = races.where(races.isin(top3), "(other)")
        slices = {s["value"]: s for s in got["slices"]["columns"]["race"]["slices"]}
        assert set(slices) == set(key)
        for value, g in want.groupby(key):
            yy, ss = g["y"].to_numpy(), g["score"].to_numpy(np.float64)
            assert slices[value]["rows"] == len(g)
            assert slices[value]["mean_score"] == pytest.approx(ss.mean(), rel=1e-9)
            if len(g) >= 30 and 0 < yy.sum() < len(yy):
                assert slices[value]["auc"] == pytest.approx(rank_auc(yy, ss), abs=1e-12)
            else:
                assert slices[value]["auc"] is None and slices[value]["note"]
        sexes = {s["value"]: s["rows"] for s in got["slices"]["columns"]["gender"]["slices"]}
        assert sexes == want["gender"].str.strip().value_counts().to_dict()
        page = (root / f"mon_{fmt}" / "index.html").read_text()
        assert "Metrics by slice" in page and "DeLong" in page


@pytest.mark.slow
def test_census_labels_table_with_the_locator_columns_as_csv_and_parquet(census_scored, tmp_path):
    """A labels table carrying (source_file, source_offset): --labels-format csv, and Parquet by extension."""
    from ctrflow.cli import monitor

    root = census_scored["root"]
    want = _census_expected(census_scored)
    labels = census_scored["df"].assign(source_file=str(root / "day" / "test.csv"), source_offset=lambda d: d.offset)
    labels = labels[["source_file", "source_offset", "income_bracket", "education"]]
    labels.to_csv(tmp_path / "labels.csv", index=False)
    labels.to_parquet(tmp_path / "labels.parquet", index=False)
    for pattern, fmt in ((tmp_path / "labels.csv", "csv"), (tmp_path / "labels.parquet", "schema")):
        got = monitor.run(["--scores", str(root / "scores_parquet"), "--labels", str(pattern), "--labels-format", fmt,
                           "--date", "2026-11-21", "--output", str(tmp_path / f"out_{fmt}"),
                           "--slice-by", "education", "--slice-top", "2"])["2026-11-21"]
        _check_census(got, want)
        edu = want["education"].str.strip()
        rows = {s["value"]: s["rows"] for s in got["slices"]["columns"]["education"]["slices"]}
        top2 = edu.value_counts().index[:2]
        assert rows == {**edu[edu.isin(top2)].value_counts().to_dict(), "(other)": int((~edu.isin(top2)).sum())}
