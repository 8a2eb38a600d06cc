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


def _col(doc: dict, name: str) -> dict:
    return next(c for c in doc["columns"] if c["name"] == name)


def _swap(doc: dict, name: str, drop: str, key: str, value) -> None:
    """Sets ``key`` on a column, dropping ``drop`` (vocabulary and hash exclude each other)."""
    _col(doc, name).pop(drop)
    _col(doc, name)[key] = value


# One document with a column of every role; each key's edit below starts from it.
KEYS_BASE = {
    "format": {"type": "csv"},
    "columns": [
        {"name": "id", "role": "id"},
        {"name": "p", "role": "passthrough"},
        {"name": "skip", "role": "ignored"},
        {"name": "x", "role": "numeric", "bucketize": {"num_buckets": 4}},
        {"name": "z", "role": "numeric", "scale": "zscore"},
        {"name": "c", "role": "categorical", "vocabulary": {}},
        {"name": "h", "role": "categorical", "hash": {"buckets": 8}},
        {"name": "y", "role": "label", "positive": ["1"]},
        {"name": "w", "role": "weight"},
    ],
}
_CROSS = {"columns": ["c", "x"], "hash_buckets": 10}
_NOTHING = None  # "without" is KEYS_BASE itself


def _set(where, key, value):
    return lambda doc: where(doc).__setitem__(key, value)


def _fmt(doc):
    return doc["format"]


def _on(name):
    return lambda doc: _col(doc, name)


# (section, key) -> (edit giving the schema "without" the key, edit giving it "with" a non-default value).
# A required key cannot be absent: its "without" is another valid value.
KEY_EDITS = {
    ("schema", "name"): (_NOTHING, _set(lambda d: d, "name", "renamed")),
    ("schema", "description"): (_NOTHING, _set(lambda d: d, "description", "for people")),
    ("schema", "format"): (lambda d: d.pop("format"), _set(lambda d: d, "format", {"header": True})),
    ("schema", "columns"): (_NOTHING, lambda d: d["columns"].append({"name": "extra", "role": "ignored"})),
    ("schema", "crosses"): (_NOTHING, _set(lambda d: d, "crosses", [_CROSS])),
    ("schema", "pairwise"): (_NOTHING, _set(lambda d: d, "pairwise", {"group": "c"})),
    ("schema", "layout"): (_NOTHING, _set(lambda d: d, "layout", "global_index")),
    ("format", "type"): (_NOTHING, _set(_fmt, "type", "parquet")),
    ("format", "header"): (_NOTHING, _set(_fmt, "header", True)),
    ("format", "delimiter"): (_NOTHING, _set(_fmt, "delimiter", ";")),
    ("format", "skip_lines"): (_NOTHING, _set(_fmt, "skip_lines", 2)),
    ("format", "comment"): (_NOTHING, _set(_fmt, "comment", "#")),
    ("format", "null_markers"): (_NOTHING, _set(_fmt, "null_markers", ["?"])),
    ("format", "strip"): (_NOTHING, _set(_fmt, "strip", False)),
    ("format", "quoting"): (_NOTHING, _set(_fmt, "quoting", False)),
    ("format", "encoding"): (_NOTHING, _set(_fmt, "encoding", "latin-1")),
    ("format", "max_field_bytes"): (_NOTHING, _set(_fmt, "max_field_bytes", 100)),
    ("column", "name"): (_NOTHING, _set(_on("c"), "name", "c2")),
    ("column", "role"): (_NOTHING, _set(_on("p"), "role", "id")),
    ("column", "group"): (_NOTHING, _set(_on("c"), "group", "user")),
    ("numeric", "bucketize"): (_NOTHING, _set(_on("z"), "bucketize", 4)),
    ("numeric", "log1p"): (_NOTHING, _set(_on("x"), "log1p", True)),
    ("numeric", "clip"): (_NOTHING, _set(_on("x"), "clip", [0, 10])),
    ("numeric", "scale"): (_NOTHING, _set(_on("x"), "scale", "minmax")),
    ("numeric", "missing"): (_NOTHING, _set(_on("z"), "missing", 5)),
    ("bucketize", "num_buckets"): (_NOTHING, _set(lambda d: _col(d, "x")["bucketize"], "num_buckets", 7)),
    ("bucketize", "epsilon"): (_NOTHING, _set(lambda d: _col(d, "x")["bucketize"], "epsilon", 0.01)),
    ("categorical", "vocabulary"): (_NOTHING, lambda d: _swap(d, "h", "hash", "vocabulary", {})),
    ("categorical", "hash"): (_NOTHING, lambda d: _swap(d, "c", "vocabulary", "hash", 8)),
    ("categorical", "multivalent"): (_NOTHING, _set(_on("h"), "multivalent", {"delimiter": "|"})),
    ("vocabulary", "top_k"): (_NOTHING, _set(lambda d: _col(d, "c")["vocabulary"], "top_k", 3)),
    ("vocabulary", "frequency_threshold"): (_NOTHING, _set(lambda d: _col(d, "c")["vocabulary"],
                                                           "frequency_threshold", 2)),
    ("vocabulary", "num_oov_buckets"): (_NOTHING, _set(lambda d: _col(d, "c")["vocabulary"], "num_oov_buckets", 3)),
    ("hash", "buckets"): (_NOTHING, _set(lambda d: _col(d, "h")["hash"], "buckets", 9)),
    ("multivalent", "delimiter"): (_set(_on("h"), "multivalent", {"delimiter": "|"}),
                                   _set(_on("h"), "multivalent", {"delimiter": ";"})),
    ("label", "positive"): (_NOTHING, _set(_on("y"), "positive", ["yes"])),
    ("label", "negative"): (_NOTHING, _set(_on("y"), "negative", ["0"])),
    ("id", "dtype"): (_NOTHING, _set(_on("id"), "dtype", "int64")),
    ("passthrough", "dtype"): (_NOTHING, _set(_on("p"), "dtype", "float64")),
    ("cross", "columns"): (_set(lambda d: d, "crosses", [_CROSS]),
                           _set(lambda d: d, "crosses", [{**_CROSS, "columns": ["c", "h"]}])),
    ("cross", "hash_buckets"): (_set(lambda d: d, "crosses", [_CROSS]),
                                _set(lambda d: d, "crosses", [{**_CROSS, "hash_buckets": 11}])),
    ("layout", "type"): (_NOTHING, _set(lambda d: d, "layout", {"type": "global_index"})),
    ("layout", "numeric"): (_set(lambda d: d, "layout", {"type": "global_index"}),
                            _set(lambda d: d, "layout", {"type": "global_index", "numeric": "value"})),
    ("pairwise", "group"): (_set(lambda d: d, "pairwise", {"group": "c"}),
                            _set(lambda d: d, "pairwise", {"group": "h"})),
}


def _accepted() -> list[tuple[str, str]]:
    from ctrflow.schemas.loader import ACCEPTED_KEYS

    return sorted((section, key) for section, keys in ACCEPTED_KEYS.items() for key in keys)


def test_keys_base_has_a_column_of_every_role():
    """Each key edit is checked beside a column of every role (a new role joins KEYS_BASE)."""
    from ctrflow.schemas.loader import _ROLES

    assert sorted({c["role"] for c in KEYS_BASE["columns"]}) == sorted(_ROLES)


def test_role_weight_changes_the_parsed_schema():
    """``role: weight`` (it has no keys of its own) is not ignored: the column becomes the schema's weight."""
    import copy

    from ctrflow.schemas import parse_schema

    without = copy.deepcopy(KEYS_BASE)
    _col(without, "w")["role"] = "ignored"
    with_ = parse_schema(KEYS_BASE, "t.yaml")
    assert with_ != parse_schema(without, "t.yaml")
    assert with_.weight.name == "w" and parse_schema(without, "t.yaml").weight is None


def test_every_accepted_key_has_an_edit_here():
    """A key added to the loader without a case below fails here, so it cannot be accepted and ignored."""
    assert sorted(KEY_EDITS) == _accepted()


@pytest.mark.parametrize("section, key", _accepted())
def test_every_accepted_key_changes_the_parsed_schema(section, key):
    import copy

    from ctrflow.schemas import parse_schema

    without_edit, with_edit = KEY_EDITS[(section, key)]
    without, with_ = copy.deepcopy(KEYS_BASE), copy.deepcopy(KEYS_BASE)
    for doc in (without, with_):
        if without_edit is not None:
            without_edit(doc)
    with_edit(with_)
    assert with_ != without
    assert parse_schema(with_, "t.yaml") != parse_schema(without, "t.yaml"), f"{section}.{key} is ignored"


def test_numeric_default_is_refused_naming_missing():
    """``missing`` is the value a missing number takes; ``default`` used to be accepted and ignored (gave 0.0)."""
    scaled = BASE.replace("bucketize: {num_buckets: 4}", "scale: zscore, default: 5")
    with pytest.raises(SchemaError, match="column 'x': default is not a key: .*`missing: <number>`"):
        loads_schema(scaled, "t.yaml")
    fixed = loads_schema(scaled.replace("default: 5", "missing: 5"), "t.yaml").column("x").numeric
    assert (fixed.default, fixed.missing_bucket) == (5.0, False)
