"""Bad input: nothing lost, too many rejects fail after writing them, a wrong schema fails fast and clearly."""
import json
import os
import subprocess
import sys

import apache_beam as beam
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from ctrflow.beam_jobs.input import plan as sources
from ctrflow.beam_jobs.input.plan import InputError, plan_reads
from ctrflow.beam_jobs.input.transforms import REJECTED, ReadRows
from ctrflow.cli.commands import _root_message
from ctrflow.common.errors import ExitCode
from ctrflow.pipeline.parsing import BatchParser
from ctrflow.schemas import loads_schema
from tests.conftest import CLICKS_SCHEMA, make_clicks, write_csv

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SCHEMA = """
format: {type: csv, header: false}
columns:
  - {name: id, role: id}
  - {name: x, role: numeric, scale: zscore}
  - {name: c, role: categorical, hash: 10}
  - {name: y, role: label, positive: ["1"], negative: ["0"]}
"""


def _schema():
    return loads_schema(SCHEMA, "s.yaml")


def _plan(path, schema=None):
    schema = schema or _schema()
    parser = BatchParser(schema, with_label=True, keys=False)
    return plan_reads(schema, [str(path)], parser.required_columns, parser=parser)


def test_every_row_is_clean_or_rejected_with_line_file_and_reason(tmp_path):
    lines = [f"{i},{i / 2},c{i % 3},{i % 2}" for i in range(100)]
    lines[5] = "5,abc,c1,1"           # bad number
    lines[17] = "17,1.0,c1"           # missing field
    lines[42] = "42,1.0,c1,maybe"     # label outside the declared set
    path = tmp_path / "d.csv"
    path.write_text("\n".join(lines) + "\n")
    schema = _schema()
    reads, _ = _plan(path)
    with beam.Pipeline() as p:
        read = p | ReadRows(schema, reads, "train", with_label=True, keys=True)
        _ = (read.rows | beam.FlatMap(lambda b: b.column("id").to_pylist())
             | "Ok" >> beam.io.WriteToText(str(tmp_path / "ok")))
        _ = read[REJECTED] | beam.Map(lambda r: r.to_json()) | "Bad" >> beam.io.WriteToText(str(tmp_path / "bad"))
    ok = [int(line) for f in os.listdir(tmp_path) if f.startswith("ok") for line in open(tmp_path / f)]
    bad = [json.loads(line) for f in os.listdir(tmp_path) if f.startswith("bad") for line in open(tmp_path / f)]
    assert sorted(ok) == sorted(set(range(100)) - {5, 17, 42})
    assert sorted((r["row"], r["source"], r["reason"]) for r in bad) == [
        ("17,1.0,c1", str(path), "expected 4 fields, got 3"),
        ("42,1.0,c1,maybe", str(path), "column 'y': label 'maybe' is not one of ['1', '0']"),
        ("5,abc,c1,1", str(path), "column 'x': cannot parse 'abc' as a number"),
    ]


def test_too_few_fields_on_most_rows_names_file_and_missing_column(tmp_path):
    path = tmp_path / "d.csv"
    path.write_text("".join(f"{i},{i},c\n" for i in range(50)))
    with pytest.raises(InputError) as e:
        _plan(path)
    assert str(e.value).startswith(f"input {path}: 50 of the first 50 rows are rejected: column 'y' is missing")
    assert "schema s.yaml" in str(e.value)


def test_labels_outside_the_declared_set_name_the_column(tmp_path):
    path = tmp_path / "d.csv"
    path.write_text("".join(f"{i},{i},c,{'yes' if i % 2 else 'no'}\n" for i in range(50)))
    with pytest.raises(InputError, match=rf"input {path}: 50 of the first 50 rows are rejected: column 'y' \(e.g. "
                                         r"column 'y': label 'no' is not one of"):
        _plan(path)


def test_parquet_missing_column_fails_at_planning(tmp_path):
    path = tmp_path / "d.parquet"
    pq.write_table(pa.table({"id": ["1"], "x": [1.0], "y": ["1"]}), path)
    with pytest.raises(InputError, match=f"input {path}: column 'c' required by schema s.yaml is missing"):
        _plan(path)


def test_files_past_the_sample_are_checked_on_workers(tmp_path, monkeypatch):
    good, wrong = tmp_path / "a.csv", tmp_path / "b.csv"
    good.write_text("".join(f"{i},{i},c,1\n" for i in range(20)))
    wrong.write_text("".join(f"{i},{i},c\n" for i in range(20)))
    monkeypatch.setattr(sources, "_SAMPLE_FILES", 1)
    schema = _schema()
    reads, _ = plan_reads(schema, [str(tmp_path / "*.csv")], ["id", "x", "c", "y"],
                          parser=BatchParser(schema, with_label=True, keys=False))
    with pytest.raises(Exception) as e:
        with beam.Pipeline() as p:
            _ = p | ReadRows(schema, reads, "train", with_label=True, keys=False)
    assert _root_message(e.value).startswith(f"input {wrong}: 20 of the first 20 rows are rejected: "
                                             "column 'y' is missing")


def test_cli_prints_one_line_naming_file_and_column(tmp_path):
    (tmp_path / "s.yaml").write_text(SCHEMA)
    path = tmp_path / "d.csv"
    path.write_text("".join(f"{i},{i},c,1,extra\n" for i in range(30)))
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"}
    proc = subprocess.run([sys.executable, "-m", "ctrflow.cli", "preprocess", "--schema", str(tmp_path / "s.yaml"),
                           "--train", str(path), "--output", str(tmp_path / "out")],
                          capture_output=True, text=True, env=env, cwd=ROOT)
    assert proc.returncode == 2  # ExitCode.USER_ERROR
    last = proc.stderr.strip().splitlines()[-1]
    assert last.startswith(f"ctrflow preprocess: error: input {path}: 30 of the first 30 rows are rejected: "
                           "rows have 5 fields but 4 columns are expected, the last being column 'y'")
    assert not (tmp_path / "out").exists()


@pytest.mark.slow
def test_too_many_rejected_rows_fail_after_writing_them(tmp_path, capsys):
    from ctrflow import cli
    from ctrflow.beam_jobs.preprocess import job as preprocess

    (tmp_path / "s.yaml").write_text(CLICKS_SCHEMA)
    df = make_clicks(1000, seed=4)
    df["age"] = df["age"].astype(object)
    df.loc[df.index[::50], "age"] = "old"  # 20 rows, 2%
    csv = write_csv(df, tmp_path / "t.csv")
    out = tmp_path / "out"
    code = cli.main(["preprocess", "--schema", str(tmp_path / "s.yaml"), "--train", csv, "--output", str(out)])
    assert code == ExitCode.TOO_MANY_REJECTED == 6
    assert capsys.readouterr().err.strip().splitlines()[-1].startswith(
        "ctrflow preprocess: error: [train] 20 of 1000 rows (2.00%) were rejected, above --max-rejected-fraction "
        "0.001; see ")
    [kept] = os.listdir(out)  # the failed run's version folder: kept for inspection, never published
    assert kept.startswith("v=") and not (out / "_LATEST").exists() and not (out / kept / "_SUCCESS").exists()
    rejected = [json.loads(line) for f in os.listdir(out / kept / "rejected")
                for line in open(out / kept / "rejected" / f)]
    assert len(rejected) == 20 and {r["reason"] for r in rejected} == {"column 'age': cannot parse 'old' as a number"}
    manifest = json.load(open(out / kept / "manifest.json"))["splits"]["train"]
    assert manifest["input_rows"] == manifest["output_rows"] + manifest["rejected_rows"] == 1000
    ok = preprocess.run(["--schema", str(tmp_path / "s.yaml"), "--train", csv, "--output", str(tmp_path / "o2"),
                         "--max-rejected-fraction", "0.05"])
    assert ok["splits"]["train"]["rejected_rows"] == 20
