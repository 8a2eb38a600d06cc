"""BatchParser: typed clean batches, and every bad row rejected with a reason."""
import math

import pyarrow as pa

from ctrflow.pipeline.parsing import BatchParser
from ctrflow.schemas import loads_schema

SCHEMA = loads_schema("""
format: {type: csv, null_markers: ["?", ""]}
columns:
  - {name: id, role: id, dtype: int64}
  - {name: x, role: numeric, bucketize: 4}
  - {name: c, role: categorical, vocabulary: {}}
  - {name: y, role: label, positive: [">50K", ">50K."], negative: ["<=50K", "<=50K."]}
""", "t.yaml")


def _table(rows):
    cols = list(zip(*rows))
    return pa.table({n: pa.array(list(v), pa.string()) for n, v in zip(["id", "x", "c", "y"], cols)})


def test_clean_rows_are_typed_and_missing_is_nan_or_empty():
    t = _table([(" 1", " 2.5", " a", " >50K."), ("2", "?", "?", "<=50K"), ("3", "-1e3", "", ">50K")])
    res = BatchParser(SCHEMA, with_label=True, keys=True).parse(t, "f.csv")
    assert res.rejected == []
    b = res.batch
    assert b.schema.names == ["id", "x", "c", "y"]
    assert b.column("id").to_pylist() == [1, 2, 3]
    x = b.column("x").to_pylist()
    assert x[0] == 2.5 and math.isnan(x[1]) and x[2] == -1000.0
    assert b.column("c").to_pylist() == ["a", "", ""]
    assert b.column("y").to_pylist() == [1.0, 0.0, 1.0]


def test_bad_rows_are_rejected_with_reasons_and_the_rest_kept():
    t = _table([("1", "abc", "a", ">50K"), ("2", "3", "b", "maybe"), ("x", "3", "b", ">50K"), ("4", "4", "d", "<=50K")])
    res = BatchParser(SCHEMA, with_label=True, keys=True).parse(t, "f.csv")
    assert res.batch.column("id").to_pylist() == [4]
    assert [r.reason for r in res.rejected] == [
        "column 'x': cannot parse 'abc' as a number",
        "column 'y': label 'maybe' is not one of ['>50K', '>50K.', '<=50K', '<=50K.']",
        "column 'id': cannot parse 'x' as int64",
    ]
    assert res.rejected[0].row == "1,abc,a,>50K" and res.rejected[0].source == "f.csv"


def test_scoring_parser_ignores_the_label_and_carries_extra_columns():
    t = _table([("1", "2", "a", "garbage")])
    p = BatchParser(SCHEMA, with_label=False, keys=True, extra=("y",))
    res = p.parse(t, "f.csv")
    assert res.rejected == [] and res.batch.column("y").to_pylist() == ["garbage"]


def test_boolean_labels_from_parquet_need_no_value_list():
    t = pa.table({"id": ["1", "2", "3"], "x": ["1", "2", "3"], "c": ["a", "b", "c"],
                  "y": pa.array([True, False, None], pa.bool_())})
    res = BatchParser(SCHEMA, with_label=True, keys=True).parse(t, "f.parquet")
    assert res.batch.column("y").to_pylist() == [1.0, 0.0]
    assert [r.reason for r in res.rejected] == ["column 'y': label is missing"]
