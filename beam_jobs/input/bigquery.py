"""BigQuery as an input: ``bigquery://`` specs read through Beam's ``ReadFromBigQuery``.

An input spec (``--train``, ``--eval``, ``--input``; ``score`` replaces
``{date}`` in it first) is one of::

    bigquery://PROJECT.DATASET.TABLE                 the whole table
    bigquery://PROJECT.DATASET.TABLE?dt={date}       equality filters (AND-ed): WHERE dt = '2026-11-21'
    bigquery://SELECT ... FROM ... WHERE ...         any standard-SQL query, used as written

The table form selects only the columns the job needs (BigQuery bills by
column) and quotes filter values as string literals, which BigQuery compares
with DATE and STRING columns; for other filters write the query yourself.
Rows arrive as dicts (that is what the connector yields) and are gathered
into Arrow tables for the same ``BatchParser`` the file readers feed.
"""
from __future__ import annotations

import dataclasses
import re
import urllib.parse

import apache_beam as beam
import pyarrow as pa

PREFIX = "bigquery://"
_TABLE = re.compile(r"^[A-Za-z0-9_-]+[.:][A-Za-z0-9_]+\.[A-Za-z0-9_$-]+$")
_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
_VALUE = re.compile(r"^[A-Za-z0-9_.:+ -]*$")


@dataclasses.dataclass(frozen=True)
class BigQueryRead:
    """One planned BigQuery read: the spec as given and the SQL that implements it."""

    spec: str
    query: str

    def describe(self) -> str:
        return self.spec


def is_bigquery(spec: str) -> bool:
    return spec.startswith(PREFIX)


def plan_bigquery(spec: str, columns: list[str]) -> BigQueryRead:
    """The standard-SQL query that reads ``spec`` (see the module doc)."""
    body = spec[len(PREFIX):].strip()
    table, _, filters = body.partition("?")
    if not _TABLE.match(table):
        if re.match(r"(?is)^(select|with)\b", body):
            return BigQueryRead(spec=spec, query=body)
        raise ValueError(f"input {spec}: expected bigquery://PROJECT.DATASET.TABLE[?column=value&...] "
                                "or bigquery://SELECT ...")
    where = []
    for name, value in urllib.parse.parse_qsl(filters, keep_blank_values=True, strict_parsing=bool(filters)):
        if not _NAME.match(name) or not _VALUE.match(value):
            raise ValueError(f"input {spec}: filter {name}={value!r} must be column=value with a plain "
                                    "value (letters, digits, _ . : + - space); write a query for anything else")
        where.append(f"`{name}` = '{value}'")
    select = ", ".join(f"`{c}`" for c in columns)
    query = f"SELECT {select} FROM `{table.replace(':', '.')}`"
    return BigQueryRead(spec=spec, query=query + (" WHERE " + " AND ".join(where) if where else ""))


def read_transform(read: BigQueryRead) -> beam.PTransform:
    """Beam's connector for one read (Storage Read API; dicts out)."""
    return beam.io.ReadFromBigQuery(query=read.query, use_standard_sql=True,
                                    method=beam.io.ReadFromBigQuery.Method.DIRECT_READ)


def rows_to_table(rows: list[dict], columns: list[str]) -> pa.Table:
    """Dict rows -> an Arrow table of ``columns``; a value pyarrow cannot type becomes a string."""
    arrays = {}
    for name in columns:
        values = [r.get(name) for r in rows]
        try:
            arrays[name] = pa.array(values)
        except (pa.ArrowInvalid, pa.ArrowTypeError):
            arrays[name] = pa.array([None if v is None else str(v) for v in values], pa.string())
    return pa.table(arrays)
