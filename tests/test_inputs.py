"""Every input format through the one reading path: CSV/TSV, Parquet, TFRecord of tf.Example, BigQuery."""
import math

import apache_beam as beam
import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import tensorflow as tf
from apache_beam.options.pipeline_options import PipelineOptions

from ctrflow.beam_jobs.input import bigquery
from ctrflow.beam_jobs.input.plan import InputError, plan_reads, read_task
from ctrflow.beam_jobs.input.transforms import COUNTS, REJECTED, ReadRows, _ParseFn, _Rows
from ctrflow.pipeline.parsing import BatchParser
from ctrflow.schemas import loads_schema

SCHEMA = """
format: {type: FORMAT, header: HEADER, delimiter: "DELIM", null_markers: ["", "NA"]}
columns:
  - {name: id, role: id, dtype: int64}
  - {name: age, role: numeric, scale: zscore}
  - {name: city, role: categorical, hash: 10}
  - {name: tags, role: categorical, hash: 10, multivalent: {delimiter: "|"}}
  - {name: y, role: label, positive: ["1"], negative: ["0"]}
"""


def _schema(fmt="csv", header=True, delim=","):
    text = SCHEMA.replace("FORMAT", fmt).replace("HEADER", str(header).lower()).replace("DELIM", delim)
    return loads_schema(text.replace('"\t"', '"\\t"'), "s.yaml")


def _frame(n=50):
    rng = np.random.default_rng(0)
    age = rng.uniform(18, 80, n).round(2)
    age[::7] = np.nan
    return pd.DataFrame({"id": np.arange(n), "age": age, "city": [f"c{i % 4}" for i in range(n)],
                         "tags": [f"t{i % 3}|t{i % 5}" for i in range(n)], "y": rng.integers(0, 2, n)})


def _read(schema, specs, parser=None):
    """Clean rows (as a pandas frame sorted by id) and rejected rows, through plan + read + parse."""
    parser = parser or BatchParser(schema, with_label=True, keys=True)
    reads, _ = plan_reads(schema, specs, parser.required_columns, range_bytes=300, parser=parser)
    batches, bad = [], []
    for task in reads:
        for raw, rejected in read_task(schema, task, parser.required_columns, batch_rows=16):
            res = parser.parse(raw, task.path)
            batches.append(res.batch)
            bad += rejected + res.rejected
    df = pa.Table.from_batches(batches, schema=parser.output_schema()).to_pandas()
    return df.sort_values("id").reset_index(drop=True), bad


def _expected(df):
    out = df.astype({"age": np.float32, "y": np.float32})
    return out[["id", "age", "city", "tags", "y"]].reset_index(drop=True)


def _write_tfrecord(df, path, *, drop_age_every=7):
    with tf.io.TFRecordWriter(str(path), options="GZIP" if str(path).endswith(".gz") else None) as w:
        for i, row in df.iterrows():
            f = {"id": tf.train.Feature(int64_list=tf.train.Int64List(value=[int(row.id)])),
                 "city": tf.train.Feature(bytes_list=tf.train.BytesList(value=[row.city.encode()])),
                 "tags": tf.train.Feature(bytes_list=tf.train.BytesList(value=[t.encode() for t in
                                                                                row.tags.split("|")])),
                 "y": tf.train.Feature(int64_list=tf.train.Int64List(value=[int(row.y)]))}
            if not math.isnan(row.age):  # a missing feature is a missing value
                f["age"] = tf.train.Feature(float_list=tf.train.FloatList(value=[row.age]))
            w.write(tf.train.Example(features=tf.train.Features(feature=f)).SerializeToString())
    return str(path)


def test_tsv_without_header_and_csv_with_header_read_the_same(tmp_path):
    df = _frame()
    df.to_csv(tmp_path / "a.tsv", sep="\t", index=False, header=False, na_rep="NA")
    df.to_csv(tmp_path / "a.csv", index=False, na_rep="NA")
    tsv, bad1 = _read(_schema("tsv", header=False, delim="\t"), [str(tmp_path / "a.tsv")])
    csv, bad2 = _read(_schema("csv"), [str(tmp_path / "a.csv")])
    assert bad1 == bad2 == []
    pd.testing.assert_frame_equal(tsv, _expected(df))
    pd.testing.assert_frame_equal(csv, _expected(df))


def test_parquet_int_label_float_age_dictionary_city(tmp_path):
    df = _frame()
    table = pa.table({"id": pa.array(df.id, pa.int32()), "age": pa.array(df.age, pa.float64()),
                      "city": pa.array(df.city).dictionary_encode(), "tags": pa.array(df.tags),
                      "y": pa.array(df.y, pa.int8()), "unused": pa.array(df.id)})
    pq.write_table(table, tmp_path / "a.parquet", row_group_size=20)
    reads, _ = plan_reads(_schema("parquet"), [str(tmp_path / "a.parquet")], ["id"])
    assert [t.row_groups for t in reads] == [(0,), (1,), (2,)]
    got, bad = _read(_schema("parquet"), [str(tmp_path / "a.parquet")])
    assert bad == []
    pd.testing.assert_frame_equal(got, _expected(df))


def test_parquet_without_a_declared_column_fails_fast_naming_file_and_column(tmp_path):
    path = tmp_path / "a.parquet"
    pq.write_table(pa.Table.from_pandas(_frame().drop(columns=["city"])), path)
    with pytest.raises(InputError) as e:
        _read(_schema("parquet"), [str(path)])
    assert str(e.value).startswith(f"input {path}: column 'city' required by schema s.yaml is missing")


def test_tfrecord_examples_decode_to_the_same_rows(tmp_path):
    df = _frame()
    path = _write_tfrecord(df, tmp_path / "a.tfrecord.gz")
    got, bad = _read(_schema("tfrecord"), [path])
    assert bad == []
    pd.testing.assert_frame_equal(got, _expected(df))


def test_tfrecord_bad_records_are_rejected_with_reasons(tmp_path):
    df = _frame(20)
    path = tmp_path / "a.tfrecord"
    _write_tfrecord(df, path)
    with tf.io.TFRecordWriter(str(tmp_path / "b.tfrecord")) as w:
        two = {"id": tf.train.Feature(int64_list=tf.train.Int64List(value=[100, 101])),
               "y": tf.train.Feature(int64_list=tf.train.Int64List(value=[1]))}
        w.write(tf.train.Example(features=tf.train.Features(feature=two)).SerializeToString())
        w.write(b"not a proto at all")
        odd = {"id": tf.train.Feature(float_list=tf.train.FloatList(value=[102.0])),
               "y": tf.train.Feature(int64_list=tf.train.Int64List(value=[0]))}
        w.write(tf.train.Example(features=tf.train.Features(feature=odd)).SerializeToString())
    got, bad = _read(_schema("tfrecord"), [str(path), str(tmp_path / "b.tfrecord")])
    assert got["id"].tolist() == list(range(20)) + [102]  # a float id 102.0 still parses as int64
    reasons = sorted(b.reason for b in bad)
    assert reasons[0] == "column 'id': 2 values in the tf.Example feature, expected one"
    assert reasons[1].startswith("not a tf.Example")
    assert all(b.source == str(tmp_path / "b.tfrecord") for b in bad)


def test_a_file_extension_overrides_the_schema_format(tmp_path):
    df = _frame()
    pq.write_table(pa.Table.from_pandas(df), tmp_path / "day.parquet")
    _write_tfrecord(df, tmp_path / "day.tfrecord")
    schema = _schema("csv")  # e.g. the schema a model was trained with on CSV
    reads, _ = plan_reads(schema, [str(tmp_path / "day.*")], ["id"])
    assert sorted(t.kind for t in reads) == ["parquet", "tfrecord"]
    for name in ("day.parquet", "day.tfrecord"):
        got, bad = _read(schema, [str(tmp_path / name)])
        assert bad == []
        pd.testing.assert_frame_equal(got, _expected(df))


def test_read_rows_mixes_formats_in_one_beam_read(tmp_path):
    df = _frame(60)
    df.iloc[:20].to_csv(tmp_path / "a.csv", index=False, na_rep="NA")
    pq.write_table(pa.Table.from_pandas(df.iloc[20:40]), tmp_path / "b.parquet")
    _write_tfrecord(df.iloc[40:], tmp_path / "c.tfrecord")
    schema = _schema("csv")
    parser = BatchParser(schema, with_label=True, keys=True)
    reads, files = plan_reads(schema, [str(tmp_path / "*")], parser.required_columns, parser=parser)
    assert len(files) == 3
    with beam.Pipeline() as p:
        read = p | ReadRows(schema, reads, "train", with_label=True, keys=True)
        _ = (read.rows | beam.Map(lambda b: b.column("id").to_pylist()) | beam.FlatMap(lambda x: x)
             | beam.combiners.ToList() | beam.Map(lambda ids: _check_ids(ids, 60)))
        _ = read[REJECTED] | beam.combiners.Count.Globally() | beam.Map(lambda n: _check_ids([n], None))


def _check_ids(ids, n):
    assert sorted(ids) == (list(range(n)) if n is not None else [0])


def test_bigquery_table_spec_selects_needed_columns_and_filters_the_date():
    read = bigquery.plan_bigquery("bigquery://proj.ds.events?dt={date}".replace("{date}", "2026-11-21"),
                                  ["id", "age"])
    assert read.query == "SELECT `id`, `age` FROM `proj.ds.events` WHERE `dt` = '2026-11-21'"
    legacy = bigquery.plan_bigquery("bigquery://proj:ds.events", ["id"])
    assert legacy.query == "SELECT `id` FROM `proj.ds.events`"
    query = "SELECT * FROM `p.d.t` WHERE dt = '2026-11-21' AND country = 'FR'"
    assert bigquery.plan_bigquery("bigquery://" + query, ["id"]).query == query


@pytest.mark.parametrize("spec", ["bigquery://just-a-name", "bigquery://p.d.t?dt=x';DROP TABLE t"])
def test_bad_bigquery_specs_fail_at_planning(spec):
    with pytest.raises(InputError, match="input bigquery://"):
        plan_reads(_schema("bigquery"), [spec], ["id"])


def test_bigquery_read_transform_is_built_without_running():
    schema = _schema("bigquery")
    reads, files = plan_reads(schema, ["bigquery://proj.ds.events?dt=2026-11-21"], ["id", "age"])
    assert files == ["bigquery://proj.ds.events?dt=2026-11-21"]
    p = beam.Pipeline(options=PipelineOptions(["--project", "p", "--temp_location", "gs://b/tmp"]))
    _ = p | ReadRows(schema, reads, "score", with_label=False, keys=True)
    found = []

    class Find(beam.pipeline.PipelineVisitor):
        def enter_composite_transform(self, node):
            if isinstance(node.transform, beam.io.ReadFromBigQuery):
                found.append(node.transform)

    p.visit(Find())
    [t] = found
    assert t._kwargs == {"query": "SELECT `id`, `age` FROM `proj.ds.events` WHERE `dt` = '2026-11-21'",
                         "use_standard_sql": True}
    assert t.method == beam.io.ReadFromBigQuery.Method.DIRECT_READ


def test_bigquery_rows_go_through_the_same_parser():
    schema = _schema("bigquery")
    fn = _ParseFn(schema, "score", False, True, (), 100, 0, 0)
    fn.setup()
    rows = [{"id": 1, "age": 30.5, "city": "a", "tags": None, "y": 1},
            {"id": 2, "age": None, "city": None, "tags": "x|y", "y": 0},
            {"id": 3, "age": "old", "city": "b", "tags": "", "y": 0}]
    out = list(fn.process(_Rows("bigquery://p.d.t", rows)))
    [batch] = [o for o in out if isinstance(o, pa.RecordBatch)]
    assert batch.column("id").to_pylist() == [1, 2] and batch.column("city").to_pylist() == ["a", ""]
    [bad] = [o.value for o in out if not isinstance(o, pa.RecordBatch) and o.tag == REJECTED]
    assert bad.source == "bigquery://p.d.t" and bad.reason == "column 'age': cannot parse 'old' as a number"
    assert [o.value for o in out if not isinstance(o, pa.RecordBatch) and o.tag == COUNTS] == [
        {"score/input_rows": 3, "score/rejected_rows": 1}]  # the counts as data (beam_jobs.outputs.row_counts)
    with pytest.raises(InputError, match="input bigquery://p.d.t: column 'city' required by schema s.yaml"):
        list(fn.process(_Rows("bigquery://p.d.t", [{"id": 1, "age": 2.0, "tags": "", "y": 1}])))
