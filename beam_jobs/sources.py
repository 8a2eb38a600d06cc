"""Reading raw tables: planning splittable reads and turning each into Arrow.

A job first *plans* its input on the driver (``plan_reads``): it matches the
patterns through Beam's filesystems (local paths, globs, ``gs://``), checks
every file's columns against the schema (a missing column stops the job here,
naming file and column), parses the first rows of the first files so a schema
that does not describe the data fails at once, and cuts files into
``ReadTask``s: byte ranges of CSV files (aligned to lines, like Beam's text
source), row groups of Parquet files, whole TFRecord files. Workers then
``read_task`` each one into raw Arrow tables with pyarrow / tfx_bsl, so no
row travels through Beam as a Python object. ``bigquery://`` inputs are
planned as queries (``beam_jobs.bigquery``).

Which reader a file gets: its extension when it names a format
(``.parquet``/``.pq``, ``.tfrecord``/``.tfrecords``, ``.csv``/``.tsv``/``.txt``,
before any compression suffix), else the schema's ``format.type``. So a
``.parquet`` daily table can be scored with a schema trained on CSV; text
files always use the schema's CSV options (delimiter, header, ...).
"""
from __future__ import annotations

import base64
import collections
import dataclasses
import io
import json
import logging
import os
import re
import struct
from typing import Iterator, Union

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv
import pyarrow.parquet as pq
from apache_beam.io.filesystem import CompressionTypes
from apache_beam.io.filesystems import FileSystems
from tfx_bsl.coders import example_coder

from ctrflow.beam_jobs.bigquery import BigQueryRead, is_bigquery, plan_bigquery
from ctrflow.pipeline.parsing import BatchParser, RejectedRow
from ctrflow.schemas.errors import UserError
from ctrflow.schemas.types import Schema

DEFAULT_RANGE_BYTES = 64 << 20
DEFAULT_BATCH_ROWS = 65536  # rows per Arrow batch (--batch-rows)
_BLOCK = 1 << 16
_SAMPLE_FILES = 32  # files whose first rows the driver parses; workers check every file the same way
_SAMPLE_BYTES = 1 << 16
_SAMPLE_ROWS = 1000
_EXTENSIONS = {".parquet": "parquet", ".pq": "parquet", ".tfrecord": "tfrecord", ".tfrecords": "tfrecord",
               ".csv": "csv", ".tsv": "csv", ".txt": "csv"}


class InputError(UserError, ValueError):
    """Input that does not fit the schema (missing file, missing column, wrong schema)."""


@dataclasses.dataclass(frozen=True)
class ReadTask:
    """One unit of reading: a byte range of a text file, row groups of a Parquet file, a TFRecord file."""

    path: str
    kind: str = "csv"  # csv | parquet | tfrecord: the reader (see file_kind)
    start: int = 0
    end: int = -1  # -1: to the end of the file
    row_groups: tuple[int, ...] = ()
    column_names: tuple[str, ...] = ()  # CSV: names of the file's fields, in order
    skip_lines: int = 0  # CSV: lines to drop at the file start (header, skip_lines)
    size: int = 0  # bytes this task covers (for progress)

    def describe(self) -> str:
        if self.row_groups:
            return f"{self.path} row groups {self.row_groups[0]}..{self.row_groups[-1]}"
        if self.kind == "tfrecord":
            return self.path
        return f"{self.path} bytes {self.start}..{'end' if self.end < 0 else self.end}"


Read = Union[ReadTask, BigQueryRead]


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
    return [ReadTask(path=path, kind="parquet", row_groups=tuple(groups[i:i + groups_per_task]),
                     size=sum(meta.row_group(g).total_byte_size for g in groups[i:i + groups_per_task]))
            for i in range(0, len(groups), groups_per_task)]


def _file_tasks(schema: Schema, path: str, size: int, required: list[str], range_bytes: int) -> list[ReadTask]:
    kind = file_kind(schema, path)
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
        tables = _read_csv_bytes(schema, task, _head(task), _SAMPLE_ROWS)
    else:
        tables = read_task(schema, task, parser.required_columns, _SAMPLE_ROWS)
    for raw, bad in tables:
        parsed = parser.parse(raw, task.path).rejected if raw.num_rows else []
        check_first_rows(schema, task, raw.num_rows + len(bad), bad + parsed)
        return


def _head(task: ReadTask) -> bytes:
    """The first whole lines of a text file (decompressed), at most about _SAMPLE_BYTES."""
    with FileSystems.open(task.path, compression_type=CompressionTypes.AUTO) as f:
        data = f.read(_SAMPLE_BYTES)
        more = f.read(1)
    if more and b"\n" in data:
        data = data[: data.rindex(b"\n") + 1]
    return data


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


def _read_csv_bytes(schema: Schema, task: ReadTask, data: bytes,
                    batch_rows: int) -> Iterator[tuple[pa.Table, list[RejectedRow]]]:
    """Yields (raw string table, rows pyarrow could not split) per chunk of the lines in ``data``."""
    fmt = schema.format
    data = _drop_lines(data, task, fmt.comment)
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


def read_parquet_task(task: ReadTask, columns: list[str],
                      batch_rows: int) -> Iterator[tuple[pa.Table, list[RejectedRow]]]:
    with FileSystems.open(task.path) as f:
        pf = pq.ParquetFile(f)
        for rb in pf.iter_batches(batch_size=batch_rows, row_groups=list(task.row_groups), columns=columns):
            yield pa.Table.from_batches([rb]), []


def _tfrecords(f, path: str) -> Iterator[bytes]:
    """Records of a TFRecord stream (length, crc, data, crc); CRCs are not verified."""
    while True:
        head = f.read(12)
        if not head:
            return
        if len(head) < 12:
            raise InputError(f"input {path}: truncated TFRecord (a record header of {len(head)} bytes)")
        (length,) = struct.unpack("<Q", head[:8])
        data = f.read(length + 4)
        if len(data) < length + 4:
            raise InputError(f"input {path}: truncated TFRecord (a record of {length} bytes is cut short)")
        yield data[:length]


def read_tfrecord_task(schema: Schema, task: ReadTask, columns: list[str],
                       batch_rows: int) -> Iterator[tuple[pa.Table, list[RejectedRow]]]:
    """tf.Examples, decoded a batch at a time by tfx_bsl, as one scalar column per schema column."""
    decoder = example_coder.ExamplesToRecordBatchDecoder()
    with FileSystems.open(task.path, compression_type=CompressionTypes.AUTO) as f:
        records = _tfrecords(f, task.path)
        while True:
            chunk = [r for _, r in zip(range(batch_rows), records)]
            if not chunk:
                return
            yield _examples_to_table(schema, decoder, chunk, columns, task.path)


def _examples_to_table(schema: Schema, decoder, records: list[bytes], columns: list[str],
                       path: str) -> tuple[pa.Table, list[RejectedRow]]:
    try:
        batch = decoder.DecodeBatch(records)
    except RuntimeError:  # a record that is not a tf.Example, or a feature whose type changes between records
        batch = None
    if batch is not None:
        return _scalar_table(schema, batch, columns, path)
    tables, bad = [], []
    for record in records:
        try:
            one = decoder.DecodeBatch([record])
        except RuntimeError as e:
            bad.append(RejectedRow(source=path, row=base64.b64encode(record).decode(),
                                   reason=f"not a tf.Example: {e}"))
            continue
        table, rejected = _scalar_table(schema, one, columns, path)
        tables.append(table.cast(pa.schema([(n, pa.string()) for n in columns])))
        bad += rejected
    empty = pa.table({n: pa.array([], pa.string()) for n in columns})
    return pa.concat_tables([empty] + tables), bad


def _scalar_table(schema: Schema, rb: pa.RecordBatch, columns: list[str],
                  path: str) -> tuple[pa.Table, list[RejectedRow]]:
    """Feature lists -> scalar columns: no value is missing, several are joined (multivalent) or rejected."""
    n = rb.num_rows
    arrays, many = {}, np.zeros(n, dtype=bool)
    reasons: dict[int, str] = {}
    for name in columns:
        if name not in rb.schema.names:
            arrays[name] = pa.nulls(n, pa.string())
            continue
        lists = rb.column(name)
        if pa.types.is_binary(lists.type.value_type) or pa.types.is_large_binary(lists.type.value_type):
            lists = lists.cast(pa.list_(pa.string()))
        lengths = np.asarray(pc.fill_null(pc.list_value_length(lists), 0))
        delimiter = _multivalent_delimiter(schema, name)
        if delimiter is not None and pa.types.is_string(lists.type.value_type):
            arrays[name] = pc.if_else(pa.array(lengths > 0), pc.binary_join(lists, delimiter), None)
            continue
        for i in np.flatnonzero((lengths > 1) & ~many):
            reasons[int(i)] = f"column {name!r}: {lengths[i]} values in the tf.Example feature, expected one"
        many |= lengths > 1
        values, starts = lists.values, np.asarray(lists.offsets)[:-1]
        if len(values) == 0:
            arrays[name] = pa.nulls(n, values.type)
            continue
        first = values.take(pa.array(np.where(lengths > 0, starts, 0)))
        arrays[name] = pc.if_else(pa.array(lengths > 0), first, pa.scalar(None, first.type))
    table = pa.table(arrays)
    if not many.any():
        return table, []
    bad = [RejectedRow(source=path, row=json.dumps(_example_row(rb, i), ensure_ascii=False), reason=reasons[i])
           for i in sorted(reasons)]
    return table.filter(pa.array(~many)), bad


def _multivalent_delimiter(schema: Schema, name: str) -> str | None:
    col = next((c for c in schema.columns if c.name == name), None)
    return col.categorical.multivalent_delimiter if col is not None and col.categorical else None


def _example_row(rb: pa.RecordBatch, i: int) -> dict:
    row = rb.slice(i, 1).to_pylist()[0]
    return {k: [x.decode("utf-8", "replace") if isinstance(x, bytes) else x for x in v] if v else v
            for k, v in row.items()}


def read_task(schema: Schema, task: ReadTask, columns: list[str],
              batch_rows: int = DEFAULT_BATCH_ROWS) -> Iterator[tuple[pa.Table, list[RejectedRow]]]:
    """Raw tables (and rows rejected while splitting or decoding them) of one read task."""
    logging.debug("reading %s", task.describe())
    if task.kind == "parquet":
        return read_parquet_task(task, columns, batch_rows)
    if task.kind == "tfrecord":
        return read_tfrecord_task(schema, task, columns, batch_rows)
    return _read_csv_bytes(schema, task, _read_range(task), batch_rows)
