"""Reading raw tables: planning splittable reads and turning each into Arrow.

A job first *plans* its input on the driver (``plan_reads``): it matches the
patterns through Beam's filesystems (local paths, globs, ``gs://``), checks
every file's columns against the schema (a missing column stops the job here,
naming file and column), and cuts files into ``ReadTask``s: byte ranges of
CSV files (aligned to lines, like Beam's text source) or row groups of Parquet
files. Workers then ``read_task`` each one into raw Arrow tables with pyarrow,
so no row ever travels through Beam as a Python object.
"""
from __future__ import annotations

import dataclasses
import io
import logging
from typing import Iterator

import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.parquet as pq
from apache_beam.io.filesystem import CompressionTypes
from apache_beam.io.filesystems import FileSystems

from pipeline.parsing import RejectedRow
from schemas.types import Schema

DEFAULT_RANGE_BYTES = 64 << 20
_BLOCK = 1 << 16


class InputError(ValueError):
    """Input that does not fit the schema (missing file, missing column)."""


@dataclasses.dataclass(frozen=True)
class ReadTask:
    """One unit of reading: a byte range of a text file or row groups of a Parquet file."""

    path: str
    start: int = 0
    end: int = -1  # -1: to the end of the file
    row_groups: tuple[int, ...] = ()
    column_names: tuple[str, ...] = ()  # CSV: names of the file's fields, in order
    skip_lines: int = 0  # CSV: lines to drop at the file start (header, skip_lines)

    def describe(self) -> str:
        if self.row_groups:
            return f"{self.path} row groups {self.row_groups[0]}..{self.row_groups[-1]}"
        return f"{self.path} bytes {self.start}..{'end' if self.end < 0 else self.end}"


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


def _first_line(path: str) -> str:
    with FileSystems.open(path, compression_type=CompressionTypes.AUTO) as f:
        line = f.readline()
    return line.decode("utf-8", "replace").rstrip("\r\n")


def _csv_task_template(schema: Schema, path: str, required: list[str]) -> ReadTask:
    fmt = schema.format
    if fmt.header:
        header = [h.strip() for h in _first_line(path).split(fmt.delimiter)]
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
    return [ReadTask(path=path, row_groups=tuple(groups[i:i + groups_per_task]))
            for i in range(0, len(groups), groups_per_task)] or []


def plan_reads(schema: Schema, patterns: list[str], required: list[str],
               range_bytes: int = DEFAULT_RANGE_BYTES) -> tuple[list[ReadTask], list[str]]:
    """Splits the matched input into read tasks; returns (tasks, files)."""
    files = match_files(patterns)
    tasks: list[ReadTask] = []
    for path, size in files:
        if schema.format.type == "parquet":
            tasks += _parquet_tasks(schema, path, required, groups_per_task=1)
            continue
        if schema.format.type != "csv":
            raise InputError(f"input {path}: format {schema.format.type!r} is not readable from files here")
        template = _csv_task_template(schema, path, required)
        if _is_compressed(path) or size <= range_bytes:
            tasks.append(template)
            continue
        for start in range(0, size, range_bytes):
            tasks.append(dataclasses.replace(template, start=start, end=min(start + range_bytes, size)))
    return tasks, [p for p, _ in files]


def _read_range(task: ReadTask) -> bytes:
    """The bytes of the lines that *start* inside [start, end)."""
    if task.end < 0:
        with FileSystems.open(task.path, compression_type=CompressionTypes.AUTO) as f:
            return f.read()
    with FileSystems.open(task.path, compression_type=CompressionTypes.UNCOMPRESSED) as f:
        pos = task.start
        if pos > 0:  # the line in progress at `start` belongs to the previous range
            f.seek(pos - 1)
            pos -= 1
            while True:
                block = f.read(_BLOCK)
                if not block:
                    return b""
                nl = block.find(b"\n")
                if nl >= 0:
                    pos += nl + 1
                    break
                pos += len(block)
            f.seek(pos)
        if pos >= task.end:
            return b""
        data = f.read(task.end - pos)
        if data.endswith(b"\n"):
            return data
        tail = []
        while True:  # finish the last line, which started inside the range
            block = f.read(_BLOCK)
            if not block:
                break
            nl = block.find(b"\n")
            if nl >= 0:
                tail.append(block[: nl + 1])
                break
            tail.append(block)
        return data + b"".join(tail)


def _drop_lines(data: bytes, task: ReadTask, comment: str | None) -> bytes:
    if task.start == 0 and task.skip_lines:
        for _ in range(task.skip_lines):
            nl = data.find(b"\n")
            data = b"" if nl < 0 else data[nl + 1:]
    if comment:
        prefix = comment.encode()
        if data.startswith(prefix) or b"\n" + prefix in data:
            data = b"\n".join(line for line in data.split(b"\n") if not line.startswith(prefix))
    return data


def read_csv_task(schema: Schema, task: ReadTask, batch_rows: int) -> Iterator[tuple[pa.Table, list[RejectedRow]]]:
    """Yields (raw string table, rows pyarrow could not split) per chunk of a range."""
    fmt = schema.format
    data = _drop_lines(_read_range(task), task, fmt.comment)
    if not data.strip():
        return
    bad: list[RejectedRow] = []
    expected = len(task.column_names)

    def on_invalid(row) -> str:
        bad.append(RejectedRow(source=task.path, row=row.text,
                               reason=f"expected {expected} fields, got {row.actual_columns}"))
        return "skip"

    reader = pacsv.open_csv(
        io.BytesIO(data),
        read_options=pacsv.ReadOptions(column_names=list(task.column_names), block_size=8 << 20,
                                       use_threads=False),
        parse_options=pacsv.ParseOptions(delimiter=fmt.delimiter, quote_char='"' if fmt.quoting else False,
                                         invalid_row_handler=on_invalid, newlines_in_values=False),
        convert_options=pacsv.ConvertOptions(column_types={n: pa.string() for n in task.column_names},
                                             strings_can_be_null=False, quoted_strings_can_be_null=False),
    )
    pending: list[pa.RecordBatch] = []
    pending_rows = 0
    for rb in reader:
        pending.append(rb)
        pending_rows += rb.num_rows
        if pending_rows >= batch_rows:
            yield pa.Table.from_batches(pending), bad
            bad, pending, pending_rows = [], [], 0
    if pending or bad:
        table = pa.Table.from_batches(pending, schema=reader.schema)
        yield table, bad


def read_parquet_task(schema: Schema, task: ReadTask, columns: list[str],
                      batch_rows: int) -> Iterator[tuple[pa.Table, list[RejectedRow]]]:
    with FileSystems.open(task.path) as f:
        pf = pq.ParquetFile(f)
        for rb in pf.iter_batches(batch_size=batch_rows, row_groups=list(task.row_groups), columns=columns):
            yield pa.Table.from_batches([rb]), []


def read_task(schema: Schema, task: ReadTask, columns: list[str],
              batch_rows: int = 65536) -> Iterator[tuple[pa.Table, list[RejectedRow]]]:
    """Raw tables (and rows rejected while splitting them) of one read task."""
    logging.debug("reading %s", task.describe())
    if schema.format.type == "parquet":
        return read_parquet_task(schema, task, columns, batch_rows)
    return read_csv_task(schema, task, batch_rows)
