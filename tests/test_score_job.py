"""The scoring job: parity on census and Criteo-format data, output formats, failures that
must leave published output alone, concurrent dates, the drift page and --fail-on-drift."""
from __future__ import annotations

import datetime
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.dataset as ds
import pytest

from ctrflow.common.errors import ExitCode
from ctrflow.pipeline.artifacts import live_dir
from tests.conftest import make_clicks, write_csv

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DATE = "2026-11-21"
ENV = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"}


def _score(model, inputs, out, *extra, date=DATE):
    from ctrflow.beam_jobs.scoring import job as score
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
    fn = load(model_dir).signature("score_and_ids")  # typed values an independent parser produced
    return fn(**{k: tf.constant(v) for k, v in raw.items()})["score"].numpy()


# ----------------------------------------------------------------------------- fast unit tests

def test_arrow_columns_convert_to_the_signature_tensors_whatever_their_layout():
    """Strings of any length/type, nulls, slices (nonzero offsets) and chunks; numerics per dtype."""
    import tensorflow as tf

    from ctrflow.beam_jobs.scoring.arrow_tensors import PackedBatch, SignatureColumns, batch_to_tensors, slices
    values = ["", "a", "héllo wörld", None, "x" * 300, "b"]
    numbers = [1.5, None, -2.0, 4.0, float("nan"), 7.25]
    specs = {"s": tf.TensorSpec([None], tf.string), "f": tf.TensorSpec([None], tf.float32),
             "t": tf.TensorSpec([None], tf.string), "i": tf.TensorSpec([None], tf.int64)}
    for typ in (pa.string(), pa.large_string(), pa.binary()):
        arr = pa.array([v.encode() if v is not None and typ == pa.binary() else v for v in values], typ)
        table = pa.table({"s": arr, "f": pa.array(numbers, pa.float32()), "t": pa.array(values[::-1]),
                          "i": pa.array(range(6), pa.int64())})
        pieces = [table, table.slice(2, 3), table.slice(5), table.slice(0, 0),
                  pa.concat_tables([table.slice(0, 2), table.slice(2)])]
        for piece in [*pieces, *(p.combine_chunks().to_batches()[0] for p in pieces if p.num_rows)]:
            got = batch_to_tensors(piece, specs)
            assert {k: v.dtype for k, v in got.items()} == {k: s.dtype for k, s in specs.items()}
            for name in ("s", "t"):
                want = [b"" if v is None else (v if isinstance(v, bytes) else v.encode())
                        for v in piece.column(name).to_pylist()]
                assert got[name].numpy().tolist() == want
            want_f = np.array([np.nan if v is None else v for v in piece.column("f").to_pylist()], np.float32)
            np.testing.assert_array_equal(got["f"].numpy(), want_f)
            assert got["i"].numpy().tolist() == piece.column("i").to_pylist()
    # a batch packed once, cut into model calls: the calls' rows put together are the batch's rows
    packed = PackedBatch.pack(table, SignatureColumns.from_specs(specs))
    assert slices(6, 4) == [(0, 4), (4, 6)] and slices(6, 0) == [(0, 6)] and slices(6, 6) == [(0, 6)]
    calls = [packed.tensors(a, b) for a, b in slices(6, 4)]
    assert [v for c in calls for v in c["t"].numpy().tolist()] == [
        b"" if v is None else v.encode() for v in values[::-1]]


class FakeBigQuery:
    """google.cloud.bigquery.Client at its boundary: records every call, runs nothing."""

    def __init__(self):
        self.calls: list[tuple] = []

    def _job(self):
        return type("Job", (), {"result": lambda self: None})()

    def create_table(self, table, exists_ok=False):
        self.calls.append(("create_table", getattr(table, "table_id", table), exists_ok))

    def load_table_from_file(self, f, destination, job_config=None):
        self.calls.append(("load", destination, job_config.write_disposition, len(f.read())))
        return self._job()

    def load_table_from_uri(self, uris, destination, job_config=None):
        self.calls.append(("load_uri", destination, job_config.write_disposition, tuple(uris)))
        return self._job()

    def copy_table(self, source, destination, job_config=None):
        self.calls.append(("copy", source, destination, job_config.write_disposition))
        return self._job()

    def delete_table(self, table, not_found_ok=False):
        self.calls.append(("delete_table", table))


@pytest.fixture
def fake_bigquery(monkeypatch):
    from ctrflow.beam_jobs.outputs import bigquery_scores as bigquery_output
    fake = FakeBigQuery()
    monkeypatch.setattr(bigquery_output, "client", lambda project: fake)
    return fake


def test_bigquery_partition_is_replaced_by_one_truncating_copy_from_a_staging_table(tmp_path, fake_bigquery):
    from ctrflow.beam_jobs.outputs import bigquery_scores as bigquery_output
    schema = pa.schema([("request_id", pa.int64()), ("score", pa.float32()), ("model_version", pa.string()),
                        ("scoring_date", pa.date32())])
    files = []
    for i in range(2):
        import pyarrow.parquet as pq
        path = str(tmp_path / f"part-{i}.parquet")
        pq.write_table(pa.table({"request_id": [i], "score": pa.array([0.5], pa.float32()), "model_version": ["v"],
                                 "scoring_date": pa.array([datetime.date(2026, 11, 21)], pa.date32())}), path)
        files.append(path)
    done = bigquery_output.replace_partition("proj:ds.scores", DATE, files, schema, run_id="v=20261121T0000-ab")
    staging = "proj.ds.scores__ctrflow_v_20261121T0000_ab"
    kinds = [c[0] for c in fake_bigquery.calls]
    assert kinds == ["create_table", "load", "load", "copy", "delete_table"]
    assert fake_bigquery.calls[0][1:] == ("scores", True)
    assert [c[1:3] for c in fake_bigquery.calls[1:3]] == [(staging, "WRITE_TRUNCATE"), (staging, "WRITE_APPEND")]
    assert fake_bigquery.calls[3] == ("copy", staging, "proj.ds.scores$20261121", "WRITE_TRUNCATE")
    assert fake_bigquery.calls[4] == ("delete_table", staging)
    assert done["partition"] == "proj:ds.scores$20261121"
    types = {f["name"]: f["type"] for f in bigquery_output.bigquery_schema(schema)["fields"]}
    assert types == {"request_id": "INT64", "score": "FLOAT64", "model_version": "STRING", "scoring_date": "DATE"}
    with pytest.raises(ValueError, match="partition decorator"):
        bigquery_output.bigquery_partition("proj:ds.scores$20260101", DATE)


# ----------------------------------------------------------------------------- census

CENSUS_COLUMNS = ["age", "workclass", "fnlwgt", "education", "education_num", "marital_status", "occupation",
                  "relationship", "race", "gender", "capital_gain", "capital_loss", "hours_per_week",
                  "native_country", "income_bracket"]


@pytest.fixture(scope="module")
def census_run(tmp_path_factory):
    """Preprocess + 1-epoch train on the first 4000 census rows; 600 adult.test rows to score."""
    from ctrflow.beam_jobs.preprocess import job as preprocess
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
    from ctrflow.beam_jobs.preprocess import job as preprocess
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
    assert list(out.columns) == ["label", "source_file", "source_offset", "score", "model_version", "scoring_date"]
    assert out["source_offset"].is_unique  # no id column: the row locator (issue 10)
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
    from ctrflow.beam_jobs.outputs.manifest import RejectedFractionError
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


def test_a_day_without_rows_publishes_empty_profiles_and_a_drift_report(clicks_run, tmp_path):
    """The profile combines run without Beam's default value; the job writes the empty profiles itself."""
    from ctrflow.pipeline import stats

    day = write_csv(make_clicks(5, seed=3).iloc[:0], tmp_path / "empty.csv")  # the header line only
    [m] = _score(clicks_run["model"], day, tmp_path / "out")
    assert (m["input_rows"], m["scored_rows"], m["rejected_rows"]) == (0, 0, 0)
    profile = stats.Profile.from_dict(json.load(open(os.path.join(m["output"], "profile.json"))))
    assert profile.rows == 0
    scores = json.load(open(os.path.join(m["output"], "score_profile.json")))
    assert sum(scores["counts"]) == 0 and scores["mean"] is None and len(scores["counts"]) == len(scores["edges"]) + 1
    drift = json.load(open(os.path.join(m["output"], "drift.json")))
    assert drift["features_over_threshold"] == [] and drift["prediction"] is not None


def test_bigquery_partition_is_written_only_after_the_rejected_rows_check(clicks_run, tmp_path, fake_bigquery):
    from ctrflow.beam_jobs.outputs.manifest import RejectedFractionError
    bad, _ = _day(tmp_path, "bad", 300, seed=21, first_id=0, bad_rows=30)
    with pytest.raises(RejectedFractionError, match="30 of 300"):
        _score(clicks_run["model"], bad, tmp_path / "out", "--output-table", "proj:ds.scores",
               "--max-rejected-fraction", "0.05")
    assert fake_bigquery.calls == []  # nothing touched BigQuery: the day's partition is as it was
    [m] = _score(clicks_run["model"], bad, tmp_path / "out", "--output-table", "proj:ds.scores",
                 "--max-rejected-fraction", "0.2")
    copies = [c for c in fake_bigquery.calls if c[0] == "copy"]
    assert copies == [("copy", m["bigquery"]["staging_table"], "proj.ds.scores$20261121", "WRITE_TRUNCATE")]
    loaded = sum(len(_parquet(f)) for f in glob_parts(m["output"]))
    assert loaded == m["scored_rows"] == 270 and m["output_table"] == "proj:ds.scores$20261121"


def glob_parts(folder):
    return sorted(os.path.join(folder, f) for f in os.listdir(folder) if f.startswith("part-"))


def test_a_run_failing_after_the_pipeline_leaves_the_previous_partition(clicks_run, tmp_path, monkeypatch):
    from ctrflow.beam_jobs.scoring import job as score
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
        for date, ids in days.items():  # what a reader sees: the live version of each date
            table = _parquet(live_dir(str(out / f"date={date}")))
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
    assert proc.returncode == ExitCode.DRIFT == 5, stderr[-2000:]
    assert "drift over PSI 0.2" in stderr.strip().splitlines()[-1]
    part = Path(live_dir(str(out / f"date={DATE}")))
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


# ----------------------------------------------------------------------------- issue 10: robustness

def _file_line_starts(path) -> list[int]:
    """Independent: the byte offset of every line of a file."""
    starts, pos = [], 0
    for line in open(path, "rb").read().splitlines(keepends=True):
        starts.append(pos)
        pos += len(line)
    return starts


def test_census_scores_carry_a_unique_row_locator(census_run, tmp_path):
    """No id column: each score names its file and the byte offset of its line, unique per row."""
    [m] = _score(census_run["model"], census_run["day"], tmp_path / "out")
    out = _parquet(m["output"])
    assert m["row_locator"] == ["source_file", "source_offset"] and m["duplicate_id_rows"] is None
    assert set(out["source_file"]) == {census_run["day"]}
    starts = _file_line_starts(census_run["day"])[1:]  # the first line is the "|1x3" comment
    assert sorted(out["source_offset"]) == starts and out["source_offset"].is_unique
    # the locator finds the row: its fields, parsed independently, give the score
    raw = open(census_run["day"], "rb").read()
    by_offset = {o: raw[o:raw.index(b"\n", o)].decode() for o in starts}
    fields = [by_offset[o].split(",") for o in out["source_offset"]]
    ages = np.array([float(f[0]) for f in fields], np.float32)
    assert (ages == _census_typed(census_run, fields)["age"]).all()
    assert np.abs(out["score"].to_numpy() - _serving_scores(census_run["model"], _census_typed(census_run, fields))
                  ).max() <= 1e-6


def _census_typed(census_run, fields: list[list[str]]) -> dict[str, np.ndarray]:
    """Independent parse of census fields: strip, '?' and '' are missing, numbers via float()."""
    from ctrflow.model.export import load_metadata
    schema = load_metadata(census_run["model"]).schema
    out = {}
    for c in schema.features:
        i = census_run["names"].index(c.name)
        vals = [f[i].strip() for f in fields]
        if c.role == "numeric":
            out[c.name] = np.array([np.nan if v in ("?", "") else float(v) for v in vals], np.float32)
        else:
            out[c.name] = np.array(["" if v in ("?", "") else v for v in vals], object)
    return out


def test_serving_signatures_normalize_the_files_raw_text_like_the_batch_job(census_run, tmp_path):
    """serving_default and serve_tf_examples take the file's text (" Private", "?", ""): same scores to 1e-6."""
    import tensorflow as tf

    from ctrflow.model.export import load
    lines = open(census_run["day"]).read().splitlines()[1:41]
    rows = [line.split(",") for line in lines]
    names = census_run["names"]
    for i, row in enumerate(rows):  # every null marker in numeric and categorical columns, with and without spaces
        row[names.index("workclass")] = [" ?", "?", "", " ", row[1]][i % 5]
        row[names.index("age")] = [" ?", row[0], "", " 39 ", row[0]][i % 5]
        row[names.index("capital_gain")] = ["?", " 0", row[10], "", row[10]][i % 5]
    (tmp_path / "in").mkdir()
    day = tmp_path / "in" / "day.csv"
    day.write_text("".join(",".join(r) + "\n" for r in rows))
    [m] = _score(census_run["model"], str(day), tmp_path / "out")
    assert m["scored_rows"] == 40 and m["rejected_rows"] == 0
    batch = _parquet(m["output"]).sort_values("source_offset")["score"].to_numpy()
    export = load(census_run["model"])
    features = [c.name for c in export.meta.schema.features]
    text = {c: tf.constant([r[names.index(c)] for r in rows]) for c in features}
    served = export.signature("serving_default")(**text)["score"].numpy()
    examples = []
    for i, r in enumerate(rows):
        f = {c: tf.train.Feature(bytes_list=tf.train.BytesList(value=[r[names.index(c)].encode()]))
             for c in features if not (i % 7 == 0 and c == "occupation")}  # an absent feature is missing
        if i % 7 == 0:
            r[names.index("occupation")] = "?"
        examples.append(tf.train.Example(features=tf.train.Features(feature=f)).SerializeToString())
    from_examples = export.signature("serve_tf_examples")(examples=tf.constant(examples))["score"].numpy()
    assert np.abs(served - batch).max() <= 1e-6
    day.write_text("".join(",".join(r) + "\n" for r in rows))  # the absent occupations as "?" for the batch job
    [m2] = _score(census_run["model"], str(day), tmp_path / "out2")
    batch2 = _parquet(m2["output"]).sort_values("source_offset")["score"].to_numpy()
    assert np.abs(from_examples - batch2).max() <= 1e-6
    with pytest.raises(tf.errors.InvalidArgumentError, match="not a finite number"):
        export.signature("serving_default")(**{**text, "age": tf.constant(["inf"] + [" 39"] * 39)})


def test_extreme_values_move_a_score_no_further_than_the_training_maximum(census_run, tmp_path):
    """A scaled feature is clipped to its training range; inf is rejected as not a finite number."""
    train = pd.read_csv(census_run["root"] / "train.csv", header=None, names=census_run["names"],
                        skipinitialspace=True)
    top = int(train["capital_gain"].max())
    base = open(census_run["day"]).read().splitlines()[1].split(",")
    gain = census_run["names"].index("capital_gain")
    rows = []
    for value in (str(top), "1e30", "inf", "2e" + "9" * 3):
        row = list(base)
        row[gain] = value
        rows.append(",".join(row))
    (tmp_path / "in").mkdir()
    day = tmp_path / "in" / "day.csv"
    day.write_text("\n".join(rows) + "\n")
    [m] = _score(census_run["model"], str(day), tmp_path / "out", "--max-rejected-fraction", "0.9")
    out = _parquet(m["output"]).sort_values("source_offset")
    assert (m["scored_rows"], m["rejected_rows"]) == (2, 2)
    at_max, far = out["score"].to_numpy()
    assert abs(far - at_max) <= 1e-6 and 0 < at_max < 1
    rejected = [json.loads(line) for f in os.listdir(m["output"]) if f.startswith("rejected")
                for line in open(os.path.join(m["output"], f))]
    assert sorted(r["reason"] for r in rejected) == ["column 'capital_gain': '2e999' is not a finite number",
                                                     "column 'capital_gain': 'inf' is not a finite number"]


def _fuzzed_day(folder) -> tuple[dict[int, str], list[tuple[str, str]]]:
    """A daily clicks table with every kind of damage; returns (scored id -> case, [(case, exact reason)])."""
    folder.mkdir()
    good = "{id},30,10.5,city01,ios,t1,camp-1,1"
    header = "request_id,age,spend,city,device,tag,campaign,clicked"
    big = 1 << 20
    cases = [  # (case, line bytes, reason or None when scored)
        ("good row", good.format(id=1).encode(), None),
        ("non-UTF-8 byte", b"2,30,1,caf\xe9,ios,t1,camp-1,0", "not valid utf-8: byte 0xe9 at position 10"),
        ("NUL byte", b"3,30,1,city01,io\x00s,t1,camp-1,0", "NUL byte at position 16"),
        ("oversized field", b"4,30,1,city01,ios,t1," + b"x" * (big + 1) + b",0",
         f"field 7 is {big + 1} bytes, over the schema's max_field_bytes {big}"),
        ("inf", b"5,inf,1,city01,ios,t1,camp-1,0", "column 'age': 'inf' is not a finite number"),
        ("nan (not a null marker)", b"6,nan,1,city01,ios,t1,camp-1,0", "column 'age': 'nan' is not a finite number"),
        ("1e400", b"7,30,1e400,city01,ios,t1,camp-1,0", "column 'spend': '1e400' is not a finite number"),
        ("extra field", b"8,30,1,city01,ios,t1,camp-1,0,surplus", "expected 8 fields, got 9"),
        ("missing field", b"9,30,1,city01,ios,t1,0", "expected 8 fields, got 7"),
        ("unterminated quote", b'10,30,1,"city01,ios,t1,camp-1,0', "unterminated quote"),
        ("null markers NA and empty", b"11,NA,,city02,android,,camp-2,0", None),
        ("duplicated id", good.format(id=1).replace(",30,", ",41,").encode(), None),
        ("no trailing newline", good.format(id=13).encode(), None),
    ]
    body = b"\n".join(line for _, line, _ in cases)  # the last line has no newline
    (folder / "main.csv").write_bytes(header.encode() + b"\n" + body)
    (folder / "crlf_bom.csv").write_bytes(b"\xef\xbb\xbf" + (header + "\r\n" + good.format(id=20) + "\r\n"
                                                                 + good.format(id=21) + "\r\n").encode())
    import gzip
    (folder / "gzip.csv.gz").write_bytes(gzip.compress((header + "\n" + good.format(id=30) + "\n"
                                                        + good.format(id=31) + "\n").encode()))
    (folder / "empty.csv").write_bytes(b"")
    scored = {1: "good row", 11: "null markers NA and empty", 13: "no trailing newline", 20: "CRLF + BOM",
              21: "CRLF + BOM", 30: "gzip", 31: "gzip"}
    rejected = [(case, reason) for case, _, reason in cases if reason is not None]
    return scored, rejected


def test_fuzzed_daily_table_every_row_is_scored_or_rejected_with_its_reason(clicks_run, tmp_path):
    scored, rejected = _fuzzed_day(tmp_path / "fuzz")
    [m] = _score(clicks_run["model"], str(tmp_path / "fuzz" / "*"), tmp_path / "out",
                 "--max-rejected-fraction", "0.9")
    out = _parquet(m["output"])
    # 13 lines in main.csv (one id twice), 2 in the CRLF/BOM file, 2 in the gzip file, 0 in the empty file
    assert m["input_rows"] == 17 == m["scored_rows"] + m["rejected_rows"]
    assert sorted(out["request_id"]) == sorted(list(scored) + [1])  # id 1 twice: scored and counted
    assert m["duplicate_id_rows"] == 1
    got = [json.loads(line) for f in os.listdir(m["output"]) if f.startswith("rejected")
           for line in open(os.path.join(m["output"], f))]
    assert sorted(r["reason"] for r in got) == sorted(reason for _, reason in rejected)
    assert all(r["source"].endswith("main.csv") and r["offset"] > 0 for r in got)
    bad_byte = next(r for r in got if r["reason"].startswith("not valid utf-8"))
    assert bad_byte["row"] == "2,30,1,caf\\xe9,ios,t1,camp-1,0"  # the raw bytes, escaped
