"""The exported SavedModel and the scoring job, end to end with real files."""
import json
import os
import subprocess
import sys
import textwrap

import numpy as np
import pandas as pd
import pyarrow.dataset as ds
import pytest

from tests.conftest import make_clicks, write_csv

pytestmark = pytest.mark.slow
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
FEATURES = ["age", "spend", "city", "device", "tag"]


def _raw_inputs(df: pd.DataFrame):
    """Raw features parsed independently (pandas), in the serving signature's types."""
    import tensorflow as tf
    out = {}
    for c in FEATURES:
        if c in ("age", "spend"):
            out[c] = tf.constant(pd.to_numeric(df[c], errors="coerce").to_numpy(np.float32))
        else:
            out[c] = tf.constant(df[c].fillna("").astype(str).to_numpy(object))
    return out


def _in_process_scores(model_dir: str, df: pd.DataFrame) -> np.ndarray:
    from ctrflow.model.export import load
    # score_and_ids takes the typed values an independent parser (pandas) produced
    return load(model_dir).signature("score_and_ids")(**_raw_inputs(df))["score"].numpy()


def _read_scores(path: str) -> pd.DataFrame:
    return ds.dataset(path, format="parquet", exclude_invalid_files=True).to_table().to_pandas()


def _score(run, input_pattern, out, date="2026-11-21", *extra):
    from ctrflow.beam_jobs.scoring import job as score
    return score.run(["--model", run["model"], "--input", input_pattern, "--date", date, "--output", str(out),
                      "--max-rejected-fraction", "0.5", *extra])


def test_metrics_and_export_layout(clicks_run):
    m = json.load(open(os.path.join(clicks_run["model"], "metrics.json")))
    assert m["eval_rows"] == 1000 and 0.5 < m["auc"] <= 1.0 and m["logloss"] > 0
    extra = os.path.join(clicks_run["model"], "export", "assets.extra")
    assert sorted(os.listdir(extra)) == ["layout.json", "model_info.json", "schema.yaml", "stats.json"]


def test_export_loads_in_a_fresh_process_and_all_signatures_agree(clicks_run, tmp_path):
    """A new interpreter (no ctrflow import) loads the SavedModel and scores the file's text and tf.Examples."""
    df = clicks_run["eval_df"].head(64)
    expected = _in_process_scores(clicks_run["model"], df)
    df.to_csv(tmp_path / "rows.csv", index=False, na_rep="NA")
    script = textwrap.dedent(f"""
        import numpy as np, pandas as pd, tensorflow as tf
        df = pd.read_csv({str(tmp_path / 'rows.csv')!r}, dtype=str, keep_default_na=False)  # the text as is
        m = tf.saved_model.load({os.path.join(clicks_run['model'], 'export')!r})
        cols = ("age", "spend", "city", "device", "tag")
        a = m.signatures["serving_default"](**{{c: tf.constant(df[c].to_numpy(object)) for c in cols}})["score"].numpy()
        examples = []
        for i in range(len(df)):  # the "NA" ages (null marker) are sent as text, or left out of the example
            f = {{c: tf.train.Feature(bytes_list=tf.train.BytesList(value=[df[c][i].encode()]))
                 for c in cols if not (c == "age" and df[c][i] == "NA" and i % 2)}}
            examples.append(tf.train.Example(features=tf.train.Features(feature=f)).SerializeToString())
        b = m.signatures["serve_tf_examples"](examples=tf.constant(examples))["score"].numpy()
        np.save({str(tmp_path / 'a.npy')!r}, a); np.save({str(tmp_path / 'b.npy')!r}, b)
    """)
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"}
    subprocess.run([sys.executable, "-c", script], check=True, env=env, cwd=str(tmp_path))
    np.testing.assert_allclose(np.load(tmp_path / "a.npy"), expected, atol=1e-6)
    np.testing.assert_allclose(np.load(tmp_path / "b.npy"), expected, atol=1e-6)
    assert ((expected > 0) & (expected < 1)).all()


def test_score_job_equals_in_process_predictions(clicks_run, tmp_path):
    [manifest] = _score(clicks_run, clicks_run["eval_csv"], tmp_path / "scores")
    out = _read_scores(manifest["output"]).sort_values("request_id")
    df = clicks_run["eval_df"].sort_values("request_id")
    assert manifest["input_rows"] == manifest["scored_rows"] == 1000 and manifest["rejected_rows"] == 0
    assert out["request_id"].tolist() == df["request_id"].tolist()
    assert out["campaign"].tolist() == df["campaign"].tolist()  # passthrough column carried
    assert str(out["request_id"].dtype) == "int64" and str(out["score"].dtype) == "float32"
    assert set(out["model_version"]) == {manifest["model_version"]}
    assert set(out["scoring_date"].astype(str)) == {"2026-11-21"}
    expected = _in_process_scores(clicks_run["model"], df)
    assert np.abs(out["score"].to_numpy() - expected).max() <= 1e-6


def test_malformed_rows_are_rejected_with_reasons_and_counted(clicks_run, tmp_path):
    df = make_clicks(300, seed=7, first_id=50_000)
    df["age"] = df["age"].astype(object)
    df.loc[3, "age"] = "forty"           # unparsable number
    df.loc[10, "city"] = "never-seen"    # unseen category: scored normally (OOV)
    df.loc[11, "device"] = np.nan        # missing value: scored normally
    (tmp_path / "in").mkdir()
    path = tmp_path / "in" / "day.csv"
    write_csv(df, path)
    with open(path, "a") as f:
        f.write("99999,1.0,2.0\n")       # wrong number of fields
    [m] = _score(clicks_run, str(path), tmp_path / "scores")
    assert (m["input_rows"], m["scored_rows"], m["rejected_rows"]) == (301, 299, 2)
    out = _read_scores(m["output"])
    assert sorted(out["request_id"]) == sorted(set(df["request_id"]) - {df.loc[3, "request_id"]})
    rejected = [json.loads(line) for f in os.listdir(m["output"]) if f.startswith("rejected")
                for line in open(os.path.join(m["output"], f))]
    reasons = sorted(r["reason"] for r in rejected)
    assert reasons == ["column 'age': cannot parse 'forty' as a number", "expected 8 fields, got 3"]
    assert all(r["source"] == str(path) for r in rejected)


def test_rerunning_a_date_leaves_exactly_one_copy(clicks_run, tmp_path):
    out = tmp_path / "scores"
    first = _score(clicks_run, clicks_run["eval_csv"], out)[0]
    second = _score(clicks_run, clicks_run["eval_csv"], out)[0]
    assert first["partition"] == second["partition"] and first["output"] != second["output"]  # a new version
    assert sorted(os.listdir(out)) == ["date=2026-11-21"]  # no staging or replaced folders left
    from ctrflow.pipeline.artifacts import live_dir
    assert live_dir(second["partition"]) == second["output"]
    table = _read_scores(second["output"])
    assert len(table) == 1000 and table["request_id"].is_unique
    parts = [f for f in os.listdir(second["output"]) if f.endswith(".parquet")]
    assert len(parts) >= 1
    assert json.load(open(os.path.join(second["output"], "manifest.json")))["scored_rows"] == 1000


def test_missing_required_column_stops_with_one_clear_message(clicks_run, tmp_path):
    df = clicks_run["eval_df"].drop(columns=["device"])
    (tmp_path / "in").mkdir()
    path = write_csv(df, tmp_path / "in" / "day.csv")
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"}
    proc = subprocess.run([sys.executable, "-m", "ctrflow.cli", "score", "--model", clicks_run["model"], "--input",
                           path, "--date", "2026-11-21", "--output", str(tmp_path / "out")],
                          capture_output=True, text=True, env=env, cwd=ROOT)
    assert proc.returncode == 2  # ExitCode.USER_ERROR
    last = proc.stderr.strip().splitlines()[-1]
    assert last.startswith(f"ctrflow score: error: input {path}: column 'device' required by schema")
    assert not (tmp_path / "out").exists()


def test_output_inside_input_or_model_is_refused(clicks_run, tmp_path):
    with pytest.raises(ValueError, match="inside the input location"):
        _score(clicks_run, str(tmp_path / "in" / "*" / "*.csv"), tmp_path / "in" / "scores")
    with pytest.raises(ValueError, match="inside the input location"):
        _score(clicks_run, str(tmp_path / "in" / "**"), tmp_path / "in" / "scores")
    with pytest.raises(ValueError, match="overlaps the model directory"):
        _score(clicks_run, str(tmp_path / "in" / "*.csv"), os.path.join(clicks_run["model"], "scores"))


def test_drift_report_flags_shifted_and_new_values(clicks_run, tmp_path):
    shifted = make_clicks(1000, seed=9, age_shift=25.0, new_cities=0.3)
    (tmp_path / "in").mkdir()
    path = write_csv(shifted, tmp_path / "in" / "shifted.csv")
    [m] = _score(clicks_run, path, tmp_path / "scores")
    drift = json.load(open(os.path.join(m["output"], "drift.json")))
    assert drift["features_over_threshold"][:1] == ["age"] or "age" in drift["features_over_threshold"]
    assert "city" in drift["features_over_threshold"]
    in_vocab = shifted["city"].isin([f"city{i:02d}" for i in range(10)])
    assert drift["features"]["city"]["oov_rate"] == pytest.approx(1 - in_vocab.mean(), abs=1e-9)
    assert drift["features"]["city"]["oov_rate_train"] == pytest.approx(310 / 2870, abs=1e-9)
    assert drift["features"]["device"]["psi"] < 0.05  # unchanged column stays stable
    age_present = shifted["age"].dropna()
    lo, hi = clicks_run["train_df"]["age"].min(), clicks_run["train_df"]["age"].max()
    expected_oor = float(((age_present < lo) | (age_present > hi)).mean())
    assert drift["features"]["age"]["out_of_range_rate"] == pytest.approx(expected_oor, abs=1e-3)
    assert m["drifted_features"] == drift["features_over_threshold"]
