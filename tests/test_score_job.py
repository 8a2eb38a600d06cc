"""The scoring job: parity on census and Criteo-format data, output formats, failures that
must leave published output alone, concurrent dates, the drift page and --fail-on-drift."""
from __future__ import annotations

import datetime
import json
import os
import subprocess
import sys

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.dataset as ds
import pytest

from tests.conftest import make_clicks, write_csv

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DATE = "2026-11-21"
ENV = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"}


def _score(model, inputs, out, *extra, date=DATE):
    from ctrflow.beam_jobs import score
    inputs = [inputs] if isinstance(inputs, str) else inputs
    argv = ["--model", model, "--date", date, "--output", str(out)]
    for pattern in inputs:
        argv += ["--input", pattern]
    return score.run(argv + list(extra))


def _parquet(path) -> pd.DataFrame:
    return ds.dataset(str(path), format="parquet", exclude_invalid_files=True).to_table().to_pandas()


def _serving_scores(model_dir: str, raw: dict[str, np.ndarray]) -> np.ndarray:
    import tensorflow as tf

    from ctrflow.model.export import load
    fn = load(model_dir).signature("serving_default")
    return fn(**{k: tf.constant(v) for k, v in raw.items()})["score"].numpy()


# ----------------------------------------------------------------------------- fast unit tests

def test_string_columns_convert_without_python_objects():
    from ctrflow.beam_jobs.model_handler import string_column_to_tensor
    values = ["", "a", "héllo wörld", None, "x" * 300, "b"]
    for typ in (pa.string(), pa.large_string()):
        arr = pa.array(values, typ)
        for piece in (arr, arr.slice(2, 3), arr.slice(5), arr.slice(0, 0), pa.chunked_array([arr[:2], arr[2:]])):
            got = [b.decode() for b in string_column_to_tensor(piece).numpy()]
            want = ["" if v is None else v for v in (piece.to_pylist())]
            assert got == want


def test_bigquery_output_is_planned_as_a_truncating_date_partition_write():
    """Builds (does not run) the BigQuery branch: table$YYYYMMDD, WRITE_TRUNCATE, day partitioning."""
    import apache_beam as beam
    from apache_beam.io.gcp.bigquery import WriteToBigQuery

    from ctrflow.beam_jobs import score

    schema = pa.schema([("request_id", pa.int64()), ("score", pa.float32()), ("model_version", pa.string()),
                        ("scoring_date", pa.date32())])
    p = beam.Pipeline()
    tables = p | beam.Create([pa.table({"request_id": [1]})])
    _ = tables | score.WriteScores(schema, "/tmp/unused", table="proj:ds.scores", date=DATE)
    found = []

    class Visitor(beam.pipeline.PipelineVisitor):
        def enter_composite_transform(self, node):
            if isinstance(node.transform, WriteToBigQuery):
                found.append(node.transform)

    p.visit(Visitor())
    [bq] = found
    assert bq.table_reference.tableId == "scores$20261121" and bq.table_reference.datasetId == "ds"
    assert bq.write_disposition == "WRITE_TRUNCATE"
    assert bq.additional_bq_parameters["timePartitioning"] == {"type": "DAY", "field": "scoring_date"}
    types = {f["name"]: f["type"] for f in bq.schema["fields"]}
    assert types == {"request_id": "INT64", "score": "FLOAT64", "model_version": "STRING", "scoring_date": "DATE"}
    rows = list(score._table_to_rows(pa.table({"request_id": pa.array([7], pa.int64()),
                                               "scoring_date": pa.array([datetime.date(2026, 11, 21)], pa.date32())})))
    assert rows == [{"request_id": 7, "scoring_date": DATE}]
    with pytest.raises(ValueError, match="partition decorator"):
        score.bigquery_partition("proj:ds.scores$20260101", DATE)


# ----------------------------------------------------------------------------- census

CENSUS_COLUMNS = ["age", "workclass", "fnlwgt", "education", "education_num", "marital_status", "occupation",
                  "relationship", "race", "gender", "capital_gain", "capital_loss", "hours_per_week",
                  "native_country", "income_bracket"]


@pytest.fixture(scope="module")
def census_run(tmp_path_factory):
    """Preprocess + 1-epoch train on the first 4000 census rows; 600 adult.test rows to score."""
    from ctrflow.beam_jobs import preprocess
    from ctrflow.model import train
    from ctrflow.schemas import load_schema

    root = tmp_path_factory.mktemp("census")
    schema_path = os.path.join(ROOT, "schemas", "census.yaml")
    names = [c.name for c in load_schema(schema_path).columns]
    with open(os.path.join(ROOT, "data", "census", "adult.data")) as f:
        lines = [next(f) for _ in range(4000)]
    (root / "train.csv").write_text("".join(lines))
    with open(os.path.join(ROOT, "data", "census", "adult.test")) as f:
        test_lines = [next(f) for _ in range(601)]  # the comment line + 600 rows
    (root / "day").mkdir()
    (root / "day" / "test.csv").write_text("".join(test_lines))
    preprocess.run(["--schema", schema_path, "--train", str(root / "train.csv"), "--output", str(root / "data")])
    train.run(["--data", str(root / "data"), "--output", str(root / "model"), "--epochs", "1", "--batch-size", "256",
               "--verbose", "0"])
    return {"root": root, "model": str(root / "model"), "day": str(root / "day" / "test.csv"), "names": names}


def test_census_job_scores_equal_in_process_predictions(census_run, tmp_path):
    from ctrflow.model.export import load_metadata
    meta = load_metadata(census_run["model"])
    [m] = _score(census_run["model"], census_run["day"], tmp_path / "out", "--passthrough", "fnlwgt,income_bracket")
    assert m["input_rows"] == 600 and m["scored_rows"] + m["rejected_rows"] == 600
    out = _parquet(m["output"])
    # an independent reading of the same raw rows: pandas, the schema's null marker "?", stripped fields
    df = pd.read_csv(census_run["day"], header=None, names=census_run["names"], skiprows=1, dtype=str,
                     keep_default_na=False, skipinitialspace=True)
    raw = {}
    for c in meta.schema.features:
        col = df[c.name].str.strip().replace("?", "")
        raw[c.name] = (pd.to_numeric(col, errors="coerce").to_numpy(np.float32) if c.role == "numeric"
                       else col.to_numpy(object))
    df["expected"] = _serving_scores(census_run["model"], raw)
    assert len(out) == m["scored_rows"] == len(df)
    got, want = np.sort(out["score"].to_numpy()), np.sort(df["expected"].to_numpy())
    assert np.abs(got - want).max() <= 1e-6  # same multiset of scores
    # row by row, on the carried (fnlwgt, income_bracket), where that pair is unique
    key = ["fnlwgt", "income_bracket"]
    df = df.assign(fnlwgt=df["fnlwgt"].str.strip(), income_bracket=df["income_bracket"].str.strip())
    df = df[~df.duplicated(key, keep=False)]
    joined = out[~out.duplicated(key, keep=False)].merge(df, on=key, how="inner", validate="one_to_one")
    assert len(joined) == len(df) >= 590
    assert np.abs(joined["score"].to_numpy() - joined["expected"].to_numpy()).max() <= 1e-6
    assert set(out.columns) >= {"fnlwgt", "income_bracket", "score", "model_version", "scoring_date"}


# ----------------------------------------------------------------------------- Criteo format

@pytest.fixture(scope="module")
def criteo_run(tmp_path_factory):
    """schemas/criteo.yaml: a small generated file (benchmarks/criteo_gen.py), preprocess + 1 epoch."""
    from benchmarks import criteo_gen
    from ctrflow.beam_jobs import preprocess
    from ctrflow.model import train

    root = tmp_path_factory.mktemp("criteo")
    train_txt = criteo_gen.write(str(root / "train" / "train.txt"), 4000, seed=3, max_cardinality=300)
    # the day: the same generator (its tokens derive from the seed), reseeded for other rows
    gen = criteo_gen.CriteoGenerator(seed=3, max_cardinality=300)
    gen.rng = np.random.default_rng(4)
    (root / "day").mkdir()
    day_txt = str(root / "day" / "day.txt")
    pacsv.write_csv(gen.chunk(1500), day_txt,
                    pacsv.WriteOptions(include_header=False, delimiter="\t", quoting_style="none"))
    schema = os.path.join(ROOT, "schemas", "criteo.yaml")
    preprocess.run(["--schema", schema, "--train", train_txt, "--output", str(root / "data")])
    train.run(["--data", str(root / "data"), "--output", str(root / "model"), "--epochs", "1", "--batch-size", "512",
               "--embedding-dim", "4", "--hidden-units", "16", "--verbose", "0"])
    return {"root": root, "model": str(root / "model"), "day": day_txt}


def _criteo_expected(path: str, model_dir: str) -> np.ndarray:
    from benchmarks.criteo_gen import COLUMNS
    df = pd.read_csv(path, sep="\t", header=None, names=COLUMNS, dtype=str, keep_default_na=False)
    raw = {c: pd.to_numeric(df[c], errors="coerce").to_numpy(np.float32) for c in COLUMNS[1:14]}
    raw.update({c: df[c].to_numpy(object) for c in COLUMNS[14:]})
    return _serving_scores(model_dir, raw), df


def test_criteo_job_scores_equal_in_process_predictions_row_by_row(criteo_run, tmp_path):
    """Every raw column is carried through (--passthrough), so each output row is matched to its input row."""
    from benchmarks.criteo_gen import COLUMNS
    expected, df = _criteo_expected(criteo_run["day"], criteo_run["model"])
    [m] = _score(criteo_run["model"], criteo_run["day"], tmp_path / "out", "--passthrough", "label",
                 "--batch-rows", "700", "--inference-batch-size", "256")
    assert (m["input_rows"], m["scored_rows"], m["rejected_rows"]) == (1500, 1500, 0)
    out = _parquet(m["output"])
    assert list(out.columns) == ["label", "score", "model_version", "scoring_date"]
    # the multiset of scores equals the model's on the raw file, within 1e-6
    got, want = np.sort(out["score"].to_numpy()), np.sort(expected)
    assert np.abs(got - want).max() <= 1e-6
    # and per label value, so rows were not mixed up across labels
    for label in ("0", "1"):
        a = np.sort(out.loc[out["label"] == label, "score"].to_numpy())
        b = np.sort(expected[(df["label"] == label).to_numpy()])
        assert len(a) == len(b) and np.abs(a - b).max() <= 1e-6
    drift = json.load(open(os.path.join(m["output"], "drift.json")))
    assert set(drift["features"]) == set(COLUMNS[1:])
    page = open(os.path.join(m["output"], "drift.html")).read()
    assert page.count("<svg") == 39
    # same generator, same tokens: the day mostly in vocabulary, no numeric column drifted
    assert all(drift["features"][f"C{i}"]["oov_rate"] < 0.5 for i in range(1, 27))
    assert not [f for f in drift["features_over_threshold"] if f.startswith("I")]


def test_output_formats_carry_the_same_rows_and_types(clicks_run, tmp_path):
    extra = ("--passthrough", "clicked", "--max-rejected-fraction", "0.5")
    [pq_m] = _score(clicks_run["model"], clicks_run["eval_csv"], tmp_path / "pq", *extra)
    [csv_m] = _score(clicks_run["model"], clicks_run["eval_csv"], tmp_path / "csv", "--output-format", "csv", *extra)
    [tf_m] = _score(clicks_run["model"], clicks_run["eval_csv"], tmp_path / "tfr", "--output-format", "tfrecord",
                    *extra)
    ref = _parquet(pq_m["output"]).sort_values("request_id").reset_index(drop=True)
    assert list(ref.columns) == ["request_id", "campaign", "clicked", "score", "model_version", "scoring_date"]
    assert str(ref["request_id"].dtype) == "int64" and str(ref["score"].dtype) == "float32"

    csv_files = sorted(f for f in os.listdir(csv_m["output"]) if f.startswith("part-") and f.endswith(".csv"))
    got = pd.concat([pd.read_csv(os.path.join(csv_m["output"], f), dtype={"clicked": str}) for f in csv_files])
    got = got.sort_values("request_id").reset_index(drop=True)
    assert list(got.columns) == list(ref.columns) and len(got) == 1000
    assert (got["request_id"] == ref["request_id"]).all() and (got["campaign"] == ref["campaign"]).all()
    assert np.abs(got["score"].to_numpy() - ref["score"].to_numpy()).max() <= 1e-6
    assert set(got["scoring_date"]) == {DATE}

    import tensorflow as tf
    tfr_files = [os.path.join(tf_m["output"], f) for f in os.listdir(tf_m["output"]) if f.endswith(".tfrecord.gz")]
    rows = []
    for path in tfr_files:
        for rec in tf.data.TFRecordDataset(path, compression_type="GZIP"):
            f = tf.train.Example.FromString(rec.numpy()).features.feature
            rows.append((f["request_id"].int64_list.value[0], f["score"].float_list.value[0],
                         f["campaign"].bytes_list.value[0].decode(), f["scoring_date"].bytes_list.value[0].decode(),
                         f["model_version"].bytes_list.value[0].decode()))
    rows.sort()
    assert [r[0] for r in rows] == ref["request_id"].tolist()
    assert np.array_equal(np.array([r[1] for r in rows], np.float32), ref["score"].to_numpy())
    assert {r[3] for r in rows} == {DATE} and {r[4] for r in rows} == {tf_m["model_version"]}


# ----------------------------------------------------------------------------- failures and concurrency

def _day(tmp_path, name, n, seed, first_id, bad_rows=0):
    df = make_clicks(n, seed=seed, first_id=first_id)
    if bad_rows:
        df["age"] = df["age"].astype(object)
        df.loc[:bad_rows - 1, "age"] = "not-a-number"
    folder = tmp_path / name
    folder.mkdir(exist_ok=True)
    return write_csv(df, folder / "day.csv"), df


def _snapshot(folder):
    return {f: open(os.path.join(folder, f), "rb").read() for f in sorted(os.listdir(folder))}


def test_too_many_rejected_rows_fail_the_run_keep_the_rejects_and_the_previous_partition(clicks_run, tmp_path):
    from ctrflow.beam_jobs.manifest import RejectedFractionError
    good, _ = _day(tmp_path, "good", 400, seed=11, first_id=0)
    bad, _ = _day(tmp_path, "bad", 400, seed=12, first_id=1000, bad_rows=40)
    out = tmp_path / "out"
    [first] = _score(clicks_run["model"], good, out)
    before = _snapshot(first["output"])
    with pytest.raises(RejectedFractionError, match="40 of 400"):
        _score(clicks_run["model"], bad, out, "--max-rejected-fraction", "0.05")
    assert _snapshot(first["output"]) == before  # published partition untouched
    assert sorted(os.listdir(out)) == ["_failed", f"date={DATE}"]  # no staging left behind
    [kept] = os.listdir(out / "_failed")
    rejected = [json.loads(line) for f in os.listdir(out / "_failed" / kept) if f.startswith("rejected")
                for line in open(out / "_failed" / kept / f)]
    assert len(rejected) == 40 and all("not-a-number" in r["reason"] for r in rejected)
    manifest = json.load(open(out / "_failed" / kept / "manifest.json"))
    assert manifest["status"].startswith("failed") and manifest["rejected_rows"] == 40
    # within the allowed fraction the same input is published
    [m] = _score(clicks_run["model"], bad, out, "--max-rejected-fraction", "0.2")
    assert (m["scored_rows"], m["rejected_rows"]) == (360, 40)
    assert sorted(_parquet(m["output"])["request_id"]) == list(range(1040, 1400))


def test_a_run_failing_after_the_pipeline_leaves_the_previous_partition(clicks_run, tmp_path, monkeypatch):
    from ctrflow.beam_jobs import score
    good, _ = _day(tmp_path, "good", 300, seed=13, first_id=0)
    other, _ = _day(tmp_path, "other", 300, seed=14, first_id=5000)
    out = tmp_path / "out"
    [first] = _score(clicks_run["model"], good, out)
    before = _snapshot(first["output"])

    def boom(*a, **k):
        raise OSError("disk full (injected)")

    monkeypatch.setattr(score, "_write_drift", boom)
    with pytest.raises(OSError, match="injected"):
        _score(clicks_run["model"], other, out)
    assert _snapshot(first["output"]) == before
    assert sorted(os.listdir(out)) == [f"date={DATE}"]
    monkeypatch.undo()
    [m] = _score(clicks_run["model"], other, out)  # and the next good run replaces it exactly
    assert sorted(_parquet(m["output"])["request_id"]) == list(range(5000, 5300))


def _cli_score(model, input_pattern, out, date, *extra):
    return subprocess.Popen([sys.executable, "-m", "ctrflow.cli", "score", "--model", model, "--input", input_pattern,
                             "--date", date, "--output", str(out), *extra],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=ENV, cwd=ROOT)


def test_concurrent_runs_for_different_dates_touch_only_their_own_partition(clicks_run, tmp_path):
    """Two processes score two dates into one output at the same time, twice (the second time replacing)."""
    days = {}
    for i, date in enumerate(("2026-11-20", "2026-11-21")):
        folder = tmp_path / "in" / date
        folder.mkdir(parents=True)
        df = make_clicks(300, seed=20 + i, first_id=10_000 * (i + 1))
        write_csv(df, folder / "day.csv")
        days[date] = set(df["request_id"])
    out = tmp_path / "out"
    pattern = str(tmp_path / "in" / "{date}" / "day.csv")
    for _ in range(2):
        procs = [_cli_score(clicks_run["model"], pattern, out, d) for d in days]
        results = [p.communicate(timeout=600) + (p.returncode,) for p in procs]
        for stdout, stderr, code in results:
            assert code == 0, stderr[-3000:]
        assert sorted(os.listdir(out)) == [f"date={d}" for d in sorted(days)]
        for date, ids in days.items():
            table = _parquet(out / f"date={date}")
            assert set(table["request_id"]) == ids and len(table) == len(ids)
            assert set(table["scoring_date"].astype(str)) == {date}


# ----------------------------------------------------------------------------- drift page and --fail-on-drift

def test_fail_on_drift_exits_non_zero_after_writing_output_and_a_readable_page(clicks_run, tmp_path):
    shifted = make_clicks(1000, seed=9, age_shift=25.0, new_cities=0.3)
    (tmp_path / "in").mkdir()
    path = write_csv(shifted, tmp_path / "in" / "shifted.csv")
    out = tmp_path / "out"
    proc = _cli_score(clicks_run["model"], path, out, DATE, "--fail-on-drift", "--max-rejected-fraction", "0.5")
    stdout, stderr = proc.communicate(timeout=600)
    assert proc.returncode != 0
    assert "drift over PSI 0.2" in stderr.strip().splitlines()[-1]
    part = out / f"date={DATE}"
    assert len(_parquet(part)) == 1000  # the scores were published before failing
    drift = json.load(open(part / "drift.json"))
    over = drift["features_over_threshold"]
    assert "age" in over and "city" in over and "device" not in over
    assert "DRIFT" in stdout and "age (PSI" in stdout and "city (PSI" in stdout
    page = open(part / "drift.html").read()
    assert page.count("<svg") == 5  # one chart per feature (age, spend, city, device, tag)
    assert "city00" in page and "(OOV)" in page  # vocabulary ids shown as tokens, OOV ids named
    assert "ios" in page and "android" in page
    for name in over:
        assert f"<tr class='drift'><td><a href='#f-{name}'>{name}</a>" in page
    # without --fail-on-drift the same day succeeds
    proc = _cli_score(clicks_run["model"], path, out, DATE, "--max-rejected-fraction", "0.5")
    stdout, stderr = proc.communicate(timeout=600)
    assert proc.returncode == 0, stderr[-2000:]
