"""Loading and validating schema YAML files.

Every problem is reported as one ``SchemaError`` naming the file, the column
and what is wrong, so a typo never turns into a silently different model.
"""
from __future__ import annotations

import codecs
import os
from typing import Any

import yaml

from ctrflow.common.errors import UserError
from ctrflow.schemas.types import (
    Bucketize,
    CategoricalTransform,
    Column,
    Cross,
    GlobalIndexLayout,
    Hash,
    InputFormat,
    NumericTransform,
    Schema,
    Vocabulary,
)

_ROLES = ("numeric", "categorical", "label", "weight", "id", "passthrough", "ignored")
_FORMAT_KEYS = {"type", "header", "delimiter", "skip_lines", "comment", "null_markers", "strip", "quoting",
                "encoding", "max_field_bytes"}
_NUMERIC_KEYS = {"bucketize", "log1p", "clip", "scale", "missing"}
_CATEGORICAL_KEYS = {"vocabulary", "hash", "multivalent"}
_COMMON_KEYS = {"name", "role", "group"}
_ROLE_KEYS = {"numeric": _NUMERIC_KEYS, "categorical": _CATEGORICAL_KEYS, "label": {"positive", "negative"},
              "weight": set(), "id": {"dtype"}, "passthrough": {"dtype"}, "ignored": set()}

ACCEPTED_KEYS: dict[str, frozenset[str]] = {
    "schema": frozenset({"name", "format", "columns", "crosses", "description", "pairwise", "layout"}),
    "format": frozenset(_FORMAT_KEYS),
    "column": frozenset(_COMMON_KEYS),
    **{role: frozenset(keys) for role, keys in _ROLE_KEYS.items()},
    "bucketize": frozenset({"num_buckets", "epsilon"}),
    "vocabulary": frozenset({"top_k", "frequency_threshold", "num_oov_buckets"}),
    "hash": frozenset({"buckets"}),
    "multivalent": frozenset({"delimiter"}),
    "cross": frozenset({"columns", "hash_buckets"}),
    "layout": frozenset({"type", "numeric"}),
    "pairwise": frozenset({"group"}),
}
"""Every key the loader accepts, by section (a column role names its own keys, beside ``column``'s).

Each one changes the parsed ``Schema`` (tests/test_schema.py walks them), so a
key can never be accepted and then silently ignored.
"""


class SchemaError(UserError, ValueError):
    """A schema file that cannot be used, with the place and reason."""


class _Ctx:
    """Builds messages that name the file and the column being checked."""

    def __init__(self, source: str, where: str = ""):
        self.source, self.where = source, where

    def at(self, where: str) -> "_Ctx":
        return _Ctx(self.source, where)

    def fail(self, problem: str) -> SchemaError:
        place = f" {self.where}:" if self.where else ""
        return SchemaError(f"schema {self.source}:{place} {problem}")

    def keys(self, d: Any, allowed: set[str], what: str) -> dict[str, Any]:
        if not isinstance(d, dict):
            raise self.fail(f"{what} must be a mapping, got {d!r}")
        unknown = sorted(set(d) - allowed)
        if unknown:
            raise self.fail(f"unknown key(s) {unknown} in {what}; allowed: {sorted(allowed)}")
        return d

    def int(self, value: Any, what: str, minimum: int) -> int:
        if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
            raise self.fail(f"{what} must be an integer >= {minimum}, got {value!r}")
        return value

    def number(self, value: Any, what: str) -> float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise self.fail(f"{what} must be a number, got {value!r}")
        return float(value)

    def bool(self, value: Any, what: str) -> bool:
        if not isinstance(value, bool):
            raise self.fail(f"{what} must be true or false, got {value!r}")
        return value

    def choice(self, value: Any, what: str, options: tuple[str, ...]) -> str:
        if value not in options:
            raise self.fail(f"{what} must be one of {list(options)}, got {value!r}")
        return value

    def strings(self, value: Any, what: str) -> tuple[str, ...]:
        if isinstance(value, (str, int, float)) and not isinstance(value, bool):
            value = [value]
        if not isinstance(value, list) or not all(isinstance(v, (str, int, float)) for v in value):
            raise self.fail(f"{what} must be a list of strings, got {value!r}")
        return tuple(str(v) for v in value)


def _parse_format(d: Any, ctx: _Ctx) -> InputFormat:
    ctx = ctx.at("format")
    d = ctx.keys(d or {}, ACCEPTED_KEYS["format"], "format")
    kind = ctx.choice(d.get("type", "csv"), "type", ("csv", "tsv", "parquet", "tfrecord", "bigquery"))
    delimiter = d.get("delimiter", "\t" if kind == "tsv" else ",")
    if not isinstance(delimiter, str) or len(delimiter) != 1:
        raise ctx.fail(f"delimiter must be a single character, got {delimiter!r}")
    comment = d.get("comment")
    if comment is not None and (not isinstance(comment, str) or not comment):
        raise ctx.fail(f"comment must be a non-empty string, got {comment!r}")
    encoding = d.get("encoding", "utf-8")
    try:
        encoding = codecs.lookup(encoding).name
    except (LookupError, TypeError):
        raise ctx.fail(f"encoding must name a Python codec (utf-8, latin-1, cp1252, ...), got {encoding!r}") from None
    return InputFormat(
        type="csv" if kind == "tsv" else kind,
        encoding=encoding,
        max_field_bytes=ctx.int(d.get("max_field_bytes", 1 << 20), "max_field_bytes", 1),
        header=ctx.bool(d.get("header", False), "header"),
        delimiter=delimiter,
        skip_lines=ctx.int(d.get("skip_lines", 0), "skip_lines", 0),
        comment=comment,
        null_markers=ctx.strings(d.get("null_markers", [""]), "null_markers"),
        strip=ctx.bool(d.get("strip", True), "strip"),
        quoting=ctx.bool(d.get("quoting", True), "quoting"),
    )


def _parse_numeric(d: dict[str, Any], ctx: _Ctx) -> NumericTransform:
    bucketize = None
    if "bucketize" in d:
        b = d["bucketize"]
        if isinstance(b, int) and not isinstance(b, bool):
            b = {"num_buckets": b}
        b = ctx.keys(b, ACCEPTED_KEYS["bucketize"], "bucketize")
        if "num_buckets" not in b:
            raise ctx.fail("bucketize needs num_buckets")
        eps = ctx.number(b.get("epsilon", 0.001), "bucketize.epsilon")
        if not 0 < eps < 0.5:
            raise ctx.fail(f"bucketize.epsilon must be in (0, 0.5), got {eps}")
        bucketize = Bucketize(num_buckets=ctx.int(b["num_buckets"], "bucketize.num_buckets", 2), epsilon=eps)
    clip = None
    if "clip" in d:
        c = d["clip"]
        if not isinstance(c, list) or len(c) != 2:
            raise ctx.fail(f"clip must be [low, high] (null for no bound), got {c!r}")
        clip = tuple(None if v is None else ctx.number(v, "clip") for v in c)
        if None not in clip and clip[0] > clip[1]:
            raise ctx.fail(f"clip low {clip[0]} is above high {clip[1]}")
    scale = ctx.choice(d.get("scale", "none"), "scale", ("none", "zscore", "minmax"))
    if bucketize is None and scale == "none":
        raise ctx.fail("a numeric column needs bucketize and/or scale (zscore|minmax)")
    missing = d.get("missing", "bucket" if bucketize else 0.0)
    if missing == "bucket":
        if bucketize is None:
            raise ctx.fail("missing: bucket needs bucketize")
        default, missing_bucket = 0.0, True
    else:
        default, missing_bucket = ctx.number(missing, "missing (a number or 'bucket')"), False
    return NumericTransform(
        bucketize=bucketize,
        log1p=ctx.bool(d.get("log1p", False), "log1p"),
        clip=clip,
        scale=scale,
        default=default,
        missing_bucket=missing_bucket,
    )


def _parse_categorical(d: dict[str, Any], ctx: _Ctx) -> CategoricalTransform:
    if ("vocabulary" in d) == ("hash" in d):
        raise ctx.fail("a categorical column needs exactly one of vocabulary or hash")
    vocabulary = hashing = None
    if "vocabulary" in d:
        v = ctx.keys(d["vocabulary"] or {}, ACCEPTED_KEYS["vocabulary"], "vocabulary")
        top_k = v.get("top_k")
        vocabulary = Vocabulary(
            top_k=None if top_k is None else ctx.int(top_k, "vocabulary.top_k", 1),
            frequency_threshold=ctx.int(v.get("frequency_threshold", 1), "vocabulary.frequency_threshold", 1),
            num_oov_buckets=ctx.int(v.get("num_oov_buckets", 1), "vocabulary.num_oov_buckets", 1),
        )
    else:
        h = d["hash"]
        if isinstance(h, int) and not isinstance(h, bool):
            h = {"buckets": h}
        h = ctx.keys(h, ACCEPTED_KEYS["hash"], "hash")
        hashing = Hash(buckets=ctx.int(h.get("buckets"), "hash.buckets", 1))
    delim = None
    if "multivalent" in d:
        m = ctx.keys(d["multivalent"], ACCEPTED_KEYS["multivalent"], "multivalent")
        delim = m.get("delimiter")
        if not isinstance(delim, str) or len(delim) == 0:
            raise ctx.fail(f"multivalent.delimiter must be a non-empty string, got {delim!r}")
    return CategoricalTransform(vocabulary=vocabulary, hash=hashing, multivalent_delimiter=delim)


def _parse_column(d: Any, i: int, ctx: _Ctx) -> Column:
    if not isinstance(d, dict) or not isinstance(d.get("name"), str) or not d["name"]:
        raise ctx.at(f"columns[{i}]").fail(f"every column needs a name, got {d!r}")
    ctx = ctx.at(f"column {d['name']!r}")
    role = ctx.choice(d.get("role"), "role", _ROLES)
    if role == "weight" and "dtype" in d:
        raise ctx.fail("a weight column is always numeric (a number >= 0 per row, read as float32): dtype is not "
                       "a key")
    if role == "numeric" and "default" in d:
        raise ctx.fail("default is not a key: the value a missing number takes is `missing: <number>` "
                       "(on the log1p/clip scale) or `missing: bucket`")
    d = ctx.keys(d, ACCEPTED_KEYS["column"] | ACCEPTED_KEYS[role], f"a {role} column")
    group = d.get("group")
    if group is not None and not isinstance(group, str):
        raise ctx.fail(f"group must be a string, got {group!r}")
    if role == "weight" and group is not None:
        raise ctx.fail("a weight column is not a feature: it has no interaction group")
    kw: dict[str, Any] = {"name": d["name"], "role": role, "group": group}
    if role == "numeric":
        kw["numeric"] = _parse_numeric(d, ctx)
    elif role == "categorical":
        kw["categorical"] = _parse_categorical(d, ctx)
    elif role == "label":
        if "positive" not in d:
            raise ctx.fail("a label needs its positive values, e.g. positive: ['1']")
        kw["positive_values"] = ctx.strings(d["positive"], "positive")
        kw["negative_values"] = ctx.strings(d.get("negative", []), "negative")
        both = set(kw["positive_values"]) & set(kw["negative_values"])
        if both:
            raise ctx.fail(f"values {sorted(both)} are both positive and negative")
    elif role in ("id", "passthrough"):
        kw["dtype"] = ctx.choice(d.get("dtype", "string"), "dtype", ("string", "int64", "float64"))
    elif role == "weight":  # numeric-typed by construction; BatchParser applies the number rules to it
        kw["dtype"] = "float64"
    return Column(**kw)


def _parse_cross(d: Any, i: int, columns: dict[str, Column], ctx: _Ctx) -> Cross:
    ctx = ctx.at(f"crosses[{i}]")
    d = ctx.keys(d, ACCEPTED_KEYS["cross"], "a cross")
    names = ctx.strings(d.get("columns"), "columns")
    if len(names) < 2:
        raise ctx.fail("a cross needs at least two columns")
    for n in names:
        col = columns.get(n)
        if col is None:
            raise ctx.fail(f"crosses unknown column {n!r}")
        if col.role == "numeric" and col.numeric.bucketize is None:
            raise ctx.fail(f"column {n!r} is numeric without bucketize; only ids can be crossed")
        if col.role not in ("numeric", "categorical"):
            raise ctx.fail(f"column {n!r} has role {col.role}; only features can be crossed")
        if col.role == "categorical" and col.categorical.multivalent_delimiter:
            raise ctx.fail(f"column {n!r} is multivalent; only single-valued columns can be crossed")
    return Cross(columns=names, hash_buckets=ctx.int(d.get("hash_buckets"), "hash_buckets", 2))


def parse_schema(doc: Any, source: str = "<memory>") -> Schema:
    """Builds a validated ``Schema`` from a parsed YAML document."""
    ctx = _Ctx(source)
    doc = ctx.keys(doc, ACCEPTED_KEYS["schema"], "the schema")
    cols_doc = doc.get("columns")
    if not isinstance(cols_doc, list) or not cols_doc:
        raise ctx.fail("columns must be a non-empty list")
    columns = tuple(_parse_column(c, i, ctx) for i, c in enumerate(cols_doc))
    seen: set[str] = set()
    for c in columns:
        if c.name in seen:
            raise ctx.at(f"column {c.name!r}").fail("is declared twice")
        seen.add(c.name)
    labels = [c.name for c in columns if c.role == "label"]
    if len(labels) > 1:
        raise ctx.fail(f"at most one label column, got {labels}")
    weights = [c.name for c in columns if c.role == "weight"]
    if len(weights) > 1:
        raise ctx.fail(f"at most one weight column, got {weights}")
    if not any(c.is_feature for c in columns):
        raise ctx.fail("no numeric or categorical feature column")
    by_name = {c.name: c for c in columns}
    crosses = tuple(_parse_cross(x, i, by_name, ctx) for i, x in enumerate(doc.get("crosses") or []))
    clash = {x.name for x in crosses} & seen
    if clash:
        raise ctx.fail(f"cross name(s) {sorted(clash)} clash with column names")
    name = doc.get("name") or os.path.splitext(os.path.basename(source))[0]
    description = doc.get("description") or ""
    if not isinstance(description, str):
        raise ctx.fail(f"description must be a string, got {description!r}")
    return Schema(name=str(name), format=_parse_format(doc.get("format"), ctx), columns=columns,
                  crosses=crosses, source=source, pairwise_group=_parse_pairwise(doc.get("pairwise"), by_name, ctx),
                  global_index=_parse_layout(doc.get("layout"), columns, ctx), description=description)


def _parse_layout(d: Any, columns: tuple[Column, ...], ctx: _Ctx) -> GlobalIndexLayout | None:
    """``layout: per_field`` (default) or ``layout: global_index`` / ``{type: global_index, numeric: ...}``."""
    ctx = ctx.at("layout")
    if d is None or isinstance(d, str):
        d = {"type": d or "per_field"}
    d = ctx.keys(d, ACCEPTED_KEYS["layout"], "layout")
    if ctx.choice(d.get("type"), "type", ("per_field", "global_index")) == "per_field":
        if "numeric" in d:
            raise ctx.fail("numeric is an option of type: global_index")
        return None
    multi = [c.name for c in columns if c.role == "categorical" and c.categorical.multivalent_delimiter]
    if multi:
        raise ctx.fail(f"global_index has one id per field; multivalent column(s) {multi} do not fit")
    return GlobalIndexLayout(numeric=ctx.choice(d.get("numeric", "bucket"), "numeric", ("bucket", "value")))


def _parse_pairwise(d: Any, columns: dict[str, Column], ctx: _Ctx) -> str | None:
    """``pairwise: {group: col}``: the (user/query/session) column pairs are formed within.

    It must be a categorical feature: preprocessing reads only features and
    the label, and carries the group's hash into the TFRecords as ``__group__``.
    """
    if d is None:
        return None
    ctx = ctx.at("pairwise")
    d = ctx.keys(d, ACCEPTED_KEYS["pairwise"], "pairwise")
    group = d.get("group")
    col = columns.get(group) if isinstance(group, str) else None
    if col is None or col.role != "categorical":
        raise ctx.fail(f"group must name a categorical column, got {group!r}")
    return group


def load_schema(path: str) -> Schema:
    """Reads and validates a schema file (local path or any Beam filesystem)."""
    from apache_beam.io.filesystems import FileSystems

    try:
        with FileSystems.open(path) as f:
            text = f.read().decode("utf-8")
    except Exception as e:  # noqa: BLE001 - re-raised with the path
        raise SchemaError(f"schema {path}: cannot read: {e}") from e
    return loads_schema(text, path)


def loads_schema(text: str, source: str = "<memory>") -> Schema:
    """Parses schema YAML text; ``source`` names it in messages."""
    try:
        doc = yaml.safe_load(text)
    except yaml.YAMLError as e:
        raise SchemaError(f"schema {source}: not valid YAML: {e}") from e
    return parse_schema(doc, source)

