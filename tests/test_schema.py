"""Schema loading: the bundled schemas load, and every mistake names file, column and problem."""
import os

import pytest

from ctrflow.schemas import SchemaError, load_schema, loads_schema

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

BASE = """
name: t
format: {type: csv, header: true}
columns:
  - {name: id, role: id}
  - {name: x, role: numeric, bucketize: {num_buckets: 4}}
  - {name: c, role: categorical, vocabulary: {top_k: 10}}
  - {name: y, role: label, positive: ["1"], negative: ["0"]}
"""


def test_census_schema_loads():
    s = load_schema(os.path.join(ROOT, "schemas", "census.yaml"))
    assert [c.name for c in s.columns][:3] == ["age", "workclass", "fnlwgt"]
    assert len(s.columns) == 15
    assert s.label.positive_values == (">50K", ">50K.")
    assert s.column("fnlwgt").role == "ignored"
    assert s.format.comment == "|" and s.format.null_markers == ("?", "")
    assert [x.name for x in s.crosses] == ["education_x_occupation", "age_x_education_x_occupation",
                                           "native_country_x_occupation"]


def test_base_schema_parses_roles_and_defaults():
    s = loads_schema(BASE, "t.yaml")
    assert [c.name for c in s.numeric] == ["x"] and [c.name for c in s.categorical] == ["c"]
    assert s.column("x").numeric.missing_bucket is True  # bucketize defaults to a missing bucket
    assert s.column("c").categorical.vocabulary.num_oov_buckets == 1
    assert [c.name for c in s.keys] == ["id"]


@pytest.mark.parametrize("edit, expected", [
    (("role: numeric, bucketize", "role: numerc, bucketize"), "column 'x': role must be one of"),
    (("bucketize: {num_buckets: 4}", "bucketize: {num_buckets: 1}"),
     "column 'x': bucketize.num_buckets must be an integer >= 2"),
    (("bucketize: {num_buckets: 4}", "bucketise: {num_buckets: 4}"), "column 'x': unknown key(s) ['bucketise']"),
    (("vocabulary: {top_k: 10}", "vocabulary: {top_k: 10}, hash: 5"),
     "column 'c': a categorical column needs exactly one of"),
    (("vocabulary: {top_k: 10}", "vocabulary: {num_oov_buckets: 0}"),
     "column 'c': vocabulary.num_oov_buckets must be an integer >= 1"),
    (('positive: ["1"], negative: ["0"]', 'negative: ["0"]'), "column 'y': a label needs its positive values"),
    (('positive: ["1"], negative: ["0"]', 'positive: ["1"], negative: ["1"]'),
     "column 'y': values ['1'] are both positive and negative"),
    (("{name: id, role: id}", "{name: c, role: id}"), "column 'c': is declared twice"),
    (("type: csv, header: true", "type: xls, header: true"), "format: type must be one of"),
])
def test_schema_errors_name_file_column_and_problem(edit, expected):
    text = BASE.replace(*edit)
    assert text != BASE
    with pytest.raises(SchemaError) as err:
        loads_schema(text, "bad.yaml")
    assert str(err.value).startswith("schema bad.yaml:")
    assert expected in str(err.value)


def test_cross_of_unknown_or_unbucketized_column_is_refused():
    with pytest.raises(SchemaError, match="crosses\\[0\\]: crosses unknown column 'nope'"):
        loads_schema(BASE + "crosses: [{columns: [c, nope], hash_buckets: 10}]\n", "x.yaml")
    scaled = BASE.replace("bucketize: {num_buckets: 4}", "scale: zscore")
    with pytest.raises(SchemaError, match="numeric without bucketize"):
        loads_schema(scaled + "crosses: [{columns: [c, x], hash_buckets: 10}]\n", "x.yaml")


def test_not_yaml_and_missing_file():
    with pytest.raises(SchemaError, match="schema bad.yaml: not valid YAML"):
        loads_schema("columns: [unclosed", "bad.yaml")
    with pytest.raises(SchemaError, match="schema /nonexistent.yaml: cannot read"):
        load_schema("/nonexistent.yaml")
