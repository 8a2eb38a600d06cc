"""Planning reads of raw tables: which files, which pieces, checked against the schema.

A job first *plans* its input on the driver (``plan_reads``): it matches the
patterns through Beam's filesystems (local paths, globs, ``gs://``), checks
every file's columns against the schema (a missing column stops the job here,
naming file and column), parses the first rows of the first files so a schema
that does not describe the data fails at once, and cuts files into
``ReadTask``s: byte ranges of CSV files (aligned to lines, like Beam's text
source), row groups of Parquet files, whole TFRecord files. Workers then
``read_task`` each one into raw Arrow tables with pyarrow / tfx_bsl, so no
row travels through Beam as a Python object. ``bigquery://`` inputs are
planned as queries (``beam_jobs.input.bigquery``).

Which reader a file gets: its extension when it names a format
(``.parquet``/``.pq``, ``.tfrecord``/``.tfrecords``, ``.csv``/``.tsv``/``.txt``,
before any compression suffix), else the schema's ``format.type``. So a
``.parquet`` daily table can be scored with a schema trained on CSV; text
files always use the schema's CSV options (delimiter, header, ...).
"""
from __future__ import annotations

import collections
import dataclasses
import logging
import os
import re

import pyarrow.parquet as pq
from apache_beam.io.filesystem import CompressionTypes
from apache_beam.io.filesystems import FileSystems

from ctrflow.beam_jobs.input.bigquery import is_bigquery, plan_bigquery
from ctrflow.beam_jobs.input.readers import first_line, read_csv_bytes, read_head, read_task
from ctrflow.beam_jobs.input.tasks import DEFAULT_BATCH_ROWS, InputError, Read, ReadTask
from ctrflow.pipeline.parsing import BatchParser, RejectedRow
from ctrflow.schemas.types import Schema

__all__ = [
    "DEFAULT_BATCH_ROWS",
    "DEFAULT_RANGE_BYTES",
    "InputError",
    "Read",
    "ReadTask",
    "check_first_rows",
    "check_sample",
    "file_kind",
    "match_files",
    "plan_reads",
    "read_task",
]

DEFAULT_RANGE_BYTES = 64 << 20
_SAMPLE_FILES = 32  # files whose first rows the driver parses; workers check every file the same way
_SAMPLE_BYTES = 1 << 16
_SAMPLE_ROWS = 1000
_EXTENSIONS = {".parquet": "parquet", ".pq": "parquet", ".tfrecord": "tfrecord", ".tfrecords": "tfrecord",
               ".csv": "csv", ".tsv": "csv", ".txt": "csv"}


def file_kind(schema: Schema, path: str) -> str:
    """The reader for ``path``: its extension if it names a format, else the schema's format."""
    name = path.lower()
    if CompressionTypes.detect_compression_type(name) != CompressionTypes.UNCOMPRESSED:
        name = os.path.splitext(name)[0]
    kind = _EXTENSIONS.get(os.path.splitext(name)[1], schema.format.type)
    if kind == "bigquery":
        raise InputError(f"input {path}: schema {schema.source} has format bigquery; give a bigquery:// input "
                         "or a file with a .csv/.parquet/.tfrecord extension")
    return kind


def match_files(patterns: list[str]) -> list[tuple[str, int]]:
    """(path, size) of every file matching the patterns; fails if one matches nothing."""
    files: list[tuple[str, int]] = []
    for pattern, result in zip(patterns, FileSystems.match(patterns)):
        found = sorted((m.path, m.size_in_bytes) for m in result.metadata_list)
        if not found:
            raise InputError(f"input {pattern!r}: no file matches")
        files.extend(found)
    return files


def _is_compressed(path: str) -> bool:
    return CompressionTypes.detect_compression_type(path) != CompressionTypes.UNCOMPRESSED


def _csv_task_template(schema: Schema, path: str, required: list[str]) -> ReadTask:
    fmt = schema.format
    if fmt.header:
        header = [h.strip() for h in first_line(path).split(fmt.delimiter)]
        missing = [c for c in required if c not in header]
        if missing:
            raise InputError(
                f"input {path}: column {missing[0]!r} required by schema {schema.source} is missing "
                f"(the header has {header}; all missing: {missing})")
        names = tuple(header)
    else:
        names = tuple(c.name for c in schema.columns)
    return ReadTask(path=path, column_names=names, skip_lines=fmt.skip_lines + int(fmt.header))


def _parquet_tasks(schema: Schema, path: str, required: list[str], groups_per_task: int) -> list[ReadTask]:
    with FileSystems.open(path) as f:
        meta = pq.ParquetFile(f).metadata
        names = set(meta.schema.to_arrow_schema().names)
    missing = [c for c in required if c not in names]
    if missing:
        raise InputError(f"input {path}: column {missing[0]!r} required by schema {schema.source} is missing "
                         f"(the file has {sorted(names)}; all missing: {missing})")
    groups = list(range(meta.num_row_groups))
    return [ReadTask(path=path, kind="parquet", row_groups=tuple(groups[i:i + groups_per_task]),
                     size=sum(meta.row_group(g).total_byte_size for g in groups[i:i + groups_per_task]))
            for i in range(0, len(groups), groups_per_task)]


def _file_tasks(schema: Schema, path: str, size: int, required: list[str], range_bytes: int) -> list[ReadTask]:
    kind = file_kind(schema, path)
    if size == 0:  # an empty file (an export's empty shard) holds no rows: nothing to read or check
        logging.getLogger(__name__).info("input %s is empty: 0 rows", path)
        return []
    if kind == "parquet":
        return _parquet_tasks(schema, path, required, groups_per_task=1)
    if kind == "tfrecord":  # missing features are missing values, so there are no columns to check here
        return [ReadTask(path=path, kind="tfrecord", size=size)]
    template = dataclasses.replace(_csv_task_template(schema, path, required), size=size)
    if _is_compressed(path) or size <= range_bytes:
        return [template]
    return [dataclasses.replace(template, start=start, end=min(start + range_bytes, size),
                                size=min(range_bytes, size - start))
            for start in range(0, size, range_bytes)]


def plan_reads(schema: Schema, patterns: list[str], required: list[str],
               range_bytes: int = DEFAULT_RANGE_BYTES,
               parser: BatchParser | None = None) -> tuple[list[Read], list[str]]:
    """Splits the input into reads; returns (reads, files and bigquery:// specs).

    With ``parser`` the first rows of the first files are parsed here, so a
    schema that does not describe the data stops the job before it starts.
    """
    reads: list[Read] = []
    sources: list[str] = []
    for pattern in patterns:
        if is_bigquery(pattern):
            try:
                reads.append(plan_bigquery(pattern, required))
            except ValueError as e:
                raise InputError(str(e)) from None
            sources.append(pattern)
            continue
        for path, size in match_files([pattern]):
            tasks = _file_tasks(schema, path, size, required, range_bytes)
            if parser is not None and tasks and len(sources) < _SAMPLE_FILES:
                check_sample(schema, tasks[0], parser)
            reads += tasks
            sources.append(path)
    return reads, sources


def check_sample(schema: Schema, task: ReadTask, parser: BatchParser) -> None:
    """Parses the first rows of a task's file; fails if the schema does not describe them."""
    if task.kind == "csv":
        tables = read_csv_bytes(schema, task, read_head(task, _SAMPLE_BYTES), _SAMPLE_ROWS)
    else:
        tables = read_task(schema, task, parser.required_columns, _SAMPLE_ROWS)
    for raw, bad in tables:
        parsed = parser.parse(raw, task.path).rejected if raw.num_rows else []
        check_first_rows(schema, task, raw.num_rows + len(bad), bad + parsed)
        return


def check_first_rows(schema: Schema, task: ReadTask, n: int, bad: list[RejectedRow]) -> None:
    """A file whose first rows are mostly rejected for one reason has the wrong schema."""
    if task.start or n < 10 or len(bad) * 2 <= n:
        return
    kinds = collections.Counter(_reason_kind(r.reason) for r in bad)
    kind, count = kinds.most_common(1)[0]
    if count * 2 <= n:
        return
    example = next(r.reason for r in bad if _reason_kind(r.reason) == kind)
    raise InputError(f"input {task.path}: {count} of the first {n} rows are rejected: {_explain(kind, example, task)}"
                     f"; does schema {schema.source} describe this file?")


def _reason_kind(reason: str) -> str:
    """Groups reasons that differ only by the offending value: the column, or the field count."""
    m = re.match(r"(column '[^']*'|expected \d+ fields, got \d+)", reason)
    return m.group(1) if m else reason


def _explain(kind: str, example: str, task: ReadTask) -> str:
    m = re.match(r"expected (\d+) fields, got (\d+)", kind)
    if not m:
        return f"{kind} (e.g. {example})"
    expected, got = int(m.group(1)), int(m.group(2))
    names = task.column_names
    if got < expected:
        return f"column {names[got]!r} is missing (rows have {got} fields; expected columns {list(names)})"
    return (f"rows have {got} fields but {expected} columns are expected, the last being "
            f"column {names[-1]!r}")
