"""Raw rows -> clean, typed Arrow batches, with every bad row kept and explained.

Both jobs (preprocess and score) read through ``BatchParser`` so a value means
the same thing at training and serving time. Conventions of a clean batch:

- numeric features: float32, missing = NaN
- categorical features: string, missing = "" (the transform maps it to
  ``schemas.MISSING_TOKEN``)
- label: float32 0/1 (only when ``with_label``)
- weight (``role: weight``, only when ``with_label``): float32, a finite number >= 0 on every kept row; a
  missing, unparsable, non-finite or negative weight rejects the row with its reason. A weight of 0 is
  kept: the row is written and counted, and weighs nothing in the loss, the metrics and calibration.
- id / passthrough columns: the schema's dtype (string, int64, float64)
- with ``locator``: ``source_file`` and ``source_offset`` (see ``LOCATOR_FIELDS``)

The rules (strip, null markers, what a number is, finiteness) are those of
``pipeline.raw_rules``: a value that is not a number is rejected as "cannot
parse", one that parses to inf, -inf or nan (``inf``, ``1e400``, ``nan``
unless ``nan`` is a null marker) as "not a finite number".

All work is vectorised with pyarrow.compute; Python touches only rejected rows.
"""
from __future__ import annotations

import dataclasses
import json
from typing import Sequence

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from ctrflow.schemas import raw_rules
from ctrflow.schemas.types import Column, Schema

OFFSET_COLUMN = "__offset__"
"""Readers put each row's position in its file here: byte offset of its line (text), row number (others)."""
LOCATOR_FIELDS = ("source_file", "source_offset")
"""The row locator of score outputs without an id column: input file, and the row's ``OFFSET_COLUMN`` value."""


@dataclasses.dataclass(frozen=True)
class RejectedRow:
    """A row that could not be used, and why. Written to the rejected-rows file."""

    source: str
    row: str
    reason: str
    offset: int | None = None  # where the row starts in ``source`` (see OFFSET_COLUMN)

    def to_json(self) -> str:
        return json.dumps(dataclasses.asdict(self), ensure_ascii=False)


@dataclasses.dataclass
class ParseResult:
    batch: pa.RecordBatch  # clean rows (possibly zero rows)
    rejected: list[RejectedRow]


def _null_mask(arr: pa.Array, null_markers: Sequence[str]) -> pa.Array:
    """True where the value is missing (null or a null marker)."""
    markers = null_markers if pa.types.is_string(arr.type) else ()
    # no nulls: the equality passes alone (one pass instead of four); a few equality passes beat one is_in hash
    # lookup per value
    mask = pc.is_null(arr) if arr.null_count or not markers else None
    for marker in markers:
        equal = pc.equal(arr, marker)
        mask = equal if mask is None else pc.or_(mask, equal)
    return pc.fill_null(mask, True) if arr.null_count else mask


class BatchParser:
    """Turns tables of raw values into clean batches for one schema.

    ``with_label``: preprocessing requires a valid label on every row; scoring
    does not read it. ``keys``: include id/passthrough columns (scoring).
    ``extra``: more columns to carry as strings (e.g. the label when scoring
    a labelled table); feature columns named here are carried anyway.
    """

    def __init__(self, schema: Schema, *, with_label: bool, keys: bool, extra: Sequence[str] = (),
                 locator: bool = False):
        self.schema, self.locator = schema, locator
        self.with_label = with_label and schema.label is not None
        self.columns: list[Column] = [
            c for c in schema.columns
            if c.is_feature or (c.role in ("label", "weight") and self.with_label) or (c.is_key and keys)
        ]
        self.extra = tuple(extra)
        chosen = {c.name for c in self.columns}
        for name in extra:
            if name not in chosen:
                schema.column(name)  # raises KeyError naming the schema for unknown columns
                self.columns.append(Column(name=name, role="passthrough"))
                chosen.add(name)
        fmt = schema.format
        self._null_markers = fmt.null_markers
        self._strip = raw_rules.strips(fmt)

    @property
    def required_columns(self) -> list[str]:
        return [c.name for c in self.columns]

    def output_schema(self) -> pa.Schema:
        """Arrow schema of the clean batches."""
        fields = [(c.name, self._arrow_type(c)) for c in self.columns]
        if self.locator:
            fields += [(LOCATOR_FIELDS[0], pa.string()), (LOCATOR_FIELDS[1], pa.int64())]
        return pa.schema(fields)

    @staticmethod
    def _arrow_type(c: Column) -> pa.DataType:
        if c.role in ("numeric", "label", "weight"):
            return pa.float32()
        if c.role == "categorical":
            return pa.string()
        return {"string": pa.string(), "int64": pa.int64(), "float64": pa.float64()}[c.dtype]

    def parse(self, table: pa.Table | pa.RecordBatch, source: str) -> ParseResult:
        """Validates and converts ``table`` (columns by name, any types).

        Rejected rows are rendered as the delimited line for CSV input (all
        columns, as read) and as a JSON object otherwise.
        """
        if isinstance(table, pa.RecordBatch):
            table = pa.Table.from_batches([table])
        n = table.num_rows
        bad = np.zeros(n, dtype=bool)
        reasons: dict[int, str] = {}
        out: list[pa.Array] = []
        for col in self.columns:
            raw = table.column(col.name).combine_chunks() if table.num_columns else pa.nulls(n)
            arr, invalid, why = self._convert(col, raw)
            out.append(arr)
            if invalid is not None:
                idx = np.flatnonzero(invalid & ~bad)
                for i in idx:
                    reasons[int(i)] = why(int(i))
                bad |= invalid
        offsets = (table.column(OFFSET_COLUMN).combine_chunks() if OFFSET_COLUMN in table.column_names
                   else pa.nulls(n, pa.int64()))
        if self.locator:
            out += [pa.repeat(pa.scalar(source, pa.string()), n), offsets.cast(pa.int64())]
        if bad.any():
            keep = pa.array(~bad)
            out = [a.filter(keep) for a in out]
        batch = pa.RecordBatch.from_arrays(out, schema=self.output_schema())  # no copy when every row is kept
        rejected: list[RejectedRow] = []
        for i in sorted(reasons):
            rejected.append(RejectedRow(source=source, row=self._row_text(table, i), reason=reasons[i],
                                        offset=offsets[i].as_py()))
        return ParseResult(batch=batch, rejected=rejected)

    def _convert(self, col: Column, raw: pa.Array):
        """Returns (clean array, invalid mask or None, reason(i) callback)."""
        if self._strip and pa.types.is_string(raw.type):
            raw = pc.ascii_trim_whitespace(raw)  # raw_rules.ASCII_WHITESPACE: UTF-8 safe, only ASCII bytes go
        if col.role == "categorical":
            s = raw if pa.types.is_string(raw.type) else pc.cast(raw, pa.string())
            if set(self._null_markers) <= {""}:  # missing is already "" (or null): no mask needed
                return (pc.fill_null(s, "") if s.null_count else s), None, None
            return pc.if_else(_null_mask(raw, self._null_markers), "", s), None, None
        missing = _null_mask(raw, self._null_markers)
        if col.role == "numeric":
            return self._to_float(col, raw, missing)
        if col.role == "label":
            return self._to_label(col, raw, missing)
        if col.role == "weight":
            return self._to_weight(col, raw, missing)
        return self._to_key(col, raw, missing)

    def _to_float(self, col: Column, raw: pa.Array, missing: pa.Array):
        if pa.types.is_integer(raw.type) or pa.types.is_floating(raw.type) or pa.types.is_boolean(raw.type):
            vals = pc.fill_null(pc.cast(raw, pa.float32()), float("nan"))
            # a typed NaN is how pandas/Parquet write "missing"; only infinities are rejected
            absent = (pc.fill_null(pc.or_kleene(pc.is_null(raw), pc.is_nan(raw)), True)
                      if pa.types.is_floating(raw.type) else pc.is_null(raw))
            return (vals, *_non_finite(col, vals, absent, raw, None))
        s = raw if pa.types.is_string(raw.type) else pc.cast(raw, pa.string())
        present = pc.if_else(missing, pa.scalar(None, pa.string()), s)
        # the common case: every present value parses (Arrow's cast accepts a subset of NUMBER_PATTERN, the
        # golden table checks it); no per-value regex needed
        try:
            vals = pc.fill_null(pc.cast(present, pa.float32()), float("nan"))
            return (vals, *_non_finite(col, vals, missing, s, None))
        except pa.ArrowInvalid:
            pass
        ok = pc.fill_null(pc.match_substring_regex(s, raw_rules.NUMBER_PATTERN), False)
        invalid = np.asarray(pc.and_(pc.invert(ok), pc.invert(missing)))
        vals = pc.cast(pc.if_else(ok, s, pa.scalar("nan")), pa.float32())
        return (vals, *_non_finite(col, vals, missing, s, invalid))

    def _to_weight(self, col: Column, raw: pa.Array, missing: pa.Array):
        """A sample weight: a number by the feature rules (``_to_float``) that is present and >= 0."""
        vals, invalid, why = self._to_float(col, raw, missing)
        v = vals.to_numpy(zero_copy_only=False)
        earlier = invalid if invalid is not None else np.zeros(len(v), dtype=bool)
        absent = np.isnan(v) & ~earlier
        negative = (v < 0) & ~earlier
        bad = earlier | absent | negative
        if not bad.any():
            return vals, None, None

        def reason(i: int) -> str:
            if earlier[i]:
                return why(i)
            if absent[i]:
                return f"column {col.name!r}: weight is missing"
            return f"column {col.name!r}: weight {raw[i].as_py()!r} is negative"

        return vals, bad, reason

    def _to_label(self, col: Column, raw: pa.Array, missing: pa.Array):
        if pa.types.is_boolean(raw.type):  # Parquet/BigQuery BOOL: true is positive, whatever the schema lists
            invalid = np.asarray(pc.is_null(raw))
            return (pc.cast(pc.fill_null(raw, False), pa.float32()), invalid if invalid.any() else None,
                    lambda i: f"column {col.name!r}: label is missing")
        s = raw if pa.types.is_string(raw.type) else pc.cast(raw, pa.string())
        s = pc.utf8_trim_whitespace(s)
        pos = pc.fill_null(pc.is_in(s, value_set=pa.array(list(col.positive_values))), False)
        if col.negative_values:
            neg = pc.fill_null(pc.is_in(s, value_set=pa.array(list(col.negative_values))), False)
            invalid = np.asarray(pc.invert(pc.or_(pos, neg)))
        else:
            invalid = np.asarray(missing)
        vals = pc.cast(pos, pa.float32())
        allowed = list(col.positive_values) + list(col.negative_values)

        def why(i: int) -> str:
            v = s[i].as_py()
            if v is None or missing[i].as_py():
                return f"column {col.name!r}: label is missing"
            return f"column {col.name!r}: label {v!r} is not one of {allowed}"

        return vals, (invalid if invalid.any() else None), why

    def _to_key(self, col: Column, raw: pa.Array, missing: pa.Array):
        if col.dtype == "string":
            s = raw if pa.types.is_string(raw.type) else pc.cast(raw, pa.string())
            return pc.if_else(missing, pa.scalar(None, pa.string()), s), None, None
        target = pa.int64() if col.dtype == "int64" else pa.float64()
        if not pa.types.is_string(raw.type):
            return pc.cast(raw, target), None, None
        pattern = raw_rules.INT_PATTERN if col.dtype == "int64" else raw_rules.NUMBER_PATTERN
        ok = pc.fill_null(pc.match_substring_regex(raw, pattern), False)
        invalid = np.asarray(pc.and_(pc.invert(ok), pc.invert(missing)))
        vals = pc.cast(pc.if_else(ok, raw, pa.scalar(None, pa.string())), target)
        return vals, (invalid if invalid.any() else None), (
            lambda i: f"column {col.name!r}: cannot parse {raw[i].as_py()!r} as {col.dtype}")


    def _row_text(self, table: pa.Table, i: int) -> str:
        """Row ``i`` as close to its input form as the table allows."""
        names = [n for n in table.column_names if n != OFFSET_COLUMN]
        values = [table.column(name)[i].as_py() for name in names]
        if self.schema.format.type == "csv":
            return self.schema.format.delimiter.join("" if v is None else str(v) for v in values)
        return json.dumps(dict(zip(names, map(_jsonable, values))), ensure_ascii=False)


def _non_finite(col: Column, vals: pa.Array, missing: pa.Array, shown: pa.Array, unparsable: np.ndarray | None):
    """(invalid mask or None, reason(i)): unparsable values, and present values that are inf/-inf/nan."""
    infinite = np.asarray(pc.and_(pc.invert(pc.fill_null(pc.is_finite(vals), False)), pc.invert(missing)))
    if unparsable is not None:
        infinite &= ~unparsable
    invalid = infinite if unparsable is None else (infinite | unparsable)
    if not invalid.any():
        return None, None

    def why(i: int) -> str:
        if infinite[i]:
            return f"column {col.name!r}: {shown[i].as_py()!r} is not a finite number"
        return f"column {col.name!r}: cannot parse {shown[i].as_py()!r} as a number"

    return invalid, why


def _jsonable(v):
    if isinstance(v, (bytes, bytearray)):
        return v.decode("utf-8", "replace")
    if isinstance(v, (str, int, float, bool)) or v is None:
        return v
    return str(v)
