"""Format readers: one planned ``ReadTask`` -> raw Arrow tables of strings, plus rows that failed to split.

Workers call ``read_task``; the driver reads a file's head through the same
functions to check a sample. CSV ranges are aligned to lines like Beam's text
source; Parquet row groups come through pyarrow; TFRecords through
``beam_jobs.outputs.tfrecord_writer`` (beside the writer). No row travels as a Python object.
"""
from __future__ import annotations

import logging
from collections.abc import Iterator

import numpy as np
import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.parquet as pq
from apache_beam.io.filesystem import CompressionTypes
from apache_beam.io.filesystems import FileSystems

from ctrflow.beam_jobs.input import raw_lines
from ctrflow.beam_jobs.input.tasks import DEFAULT_BATCH_ROWS, ReadTask
from ctrflow.beam_jobs.input.tfrecord_reader import read_tfrecord_task
from ctrflow.pipeline.parsing import OFFSET_COLUMN, RejectedRow
from ctrflow.schemas.types import Schema

_BLOCK = 1 << 16


def first_line(path: str) -> str:
    with FileSystems.open(path, compression_type=CompressionTypes.AUTO) as f:
        line = f.readline()
    line = line.removeprefix(raw_lines.BOM)
    return line.decode("utf-8", "replace").rstrip("\r\n")


def read_head(task: ReadTask, max_bytes: int) -> bytes:
    """The first whole lines of a text file (decompressed), at most about ``max_bytes``."""
    with FileSystems.open(task.path, compression_type=CompressionTypes.AUTO) as f:
        data = f.read(max_bytes)
        more = f.read(1)
    if more and b"\n" in data:
        data = data[: data.rindex(b"\n") + 1]
    return data


def _line_end(f, at: int) -> int:
    """The offset just past the first newline at or after ``at``, or the end of the file."""
    f.seek(at)
    while True:
        block = f.read(_BLOCK)
        if not block:
            return at
        nl = block.find(b"\n")
        if nl >= 0:
            return at + nl + 1
        at += len(block)


def _read_range(task: ReadTask) -> tuple[int, bytes]:
    """(offset, the bytes of the lines that *start* inside [start, end)).

    Both ends are found first and the range read in one call: reading to
    ``end`` and appending the last line's tail copied every range once more.
    """
    if task.end < 0:
        with FileSystems.open(task.path, compression_type=CompressionTypes.AUTO) as f:
            return 0, f.read()
    with FileSystems.open(task.path, compression_type=CompressionTypes.UNCOMPRESSED) as f:
        # the line in progress at ``start`` belongs to the previous range, the one in progress at ``end`` to this one
        pos = _line_end(f, task.start - 1) if task.start > 0 else 0
        if pos >= task.end:
            return pos, b""
        stop = _line_end(f, task.end - 1)
        f.seek(pos)
        return pos, f.read(stop - pos)


def read_csv_bytes(schema: Schema, task: ReadTask, data: bytes, batch_rows: int,
                   base_offset: int = 0) -> Iterator[tuple[pa.Table, list[RejectedRow]]]:
    """Yields (raw string table, rows rejected before parsing) per chunk of the lines in ``data``.

    ``data`` starts at ``base_offset`` in the file; every table carries each
    row's line offset in ``OFFSET_COLUMN``. Lines with bad bytes are rejected
    by ``raw_lines.screen``, lines pyarrow cannot split by the field count.
    """
    fmt = schema.format
    screened = raw_lines.screen(data, path=task.path, base_offset=base_offset,
                                at_file_start=task.start == 0 and base_offset == 0, skip_lines=task.skip_lines,
                                comment=fmt.comment, encoding=fmt.encoding, delimiter=fmt.delimiter,
                                max_field_bytes=fmt.max_field_bytes, quoting=fmt.quoting)
    bad: list[RejectedRow] = list(screened.rejected)
    if not screened.data or screened.data.isspace():  # not .strip(): that copied every range, GIL held
        if bad:
            yield _empty_table(task), bad
        return
    expected = len(task.column_names)
    invalid_rows: set[int] = set()  # pyarrow's 1-based numbers of non-empty lines it could not split
    offsets = screened.offsets

    def on_invalid(row) -> str:
        offset = int(offsets[row.number - 1]) if row.number is not None and row.number <= len(offsets) else None
        invalid_rows.add(row.number)
        bad.append(RejectedRow(source=task.path, row=row.text, offset=offset,
                               reason=f"expected {expected} fields, got {row.actual_columns}"))
        return "skip"

    reader = pacsv.open_csv(
        pa.BufferReader(screened.data),  # read by Arrow in C++; an io.BytesIO is read through Python, with the GIL
        read_options=pacsv.ReadOptions(column_names=list(task.column_names), use_threads=False,
                                       block_size=max(8 << 20, screened.longest_line + 2)),
        parse_options=pacsv.ParseOptions(delimiter=fmt.delimiter, quote_char='"' if fmt.quoting else False,
                                         invalid_row_handler=on_invalid, newlines_in_values=False),
        # screen() passes only valid UTF-8 on, so pyarrow's own check of every string would be redundant
        convert_options=pacsv.ConvertOptions(column_types={n: pa.string() for n in task.column_names},
                                             strings_can_be_null=False, quoted_strings_can_be_null=False,
                                             check_utf8=False),
    )
    done = 0  # rows already yielded

    def with_offsets(batches: list[pa.RecordBatch]) -> pa.Table:
        nonlocal done
        table = pa.Table.from_batches(batches, schema=reader.schema)
        valid = np.ones(len(offsets), bool)  # lines pyarrow turned into rows (every skip so far is known)
        skipped = np.fromiter((n - 1 for n in invalid_rows if n is not None and n <= len(offsets)), np.int64)
        valid[skipped] = False
        picked = offsets[valid][done:done + table.num_rows]
        if len(picked) < table.num_rows:  # lines split differently than expected (bare CR newlines): no locator
            picked = np.full(table.num_rows, -1, np.int64)
        done += table.num_rows
        return table.append_column(OFFSET_COLUMN, pa.array(picked, pa.int64()))

    pending: list[pa.RecordBatch] = []
    pending_rows = 0
    for rb in reader:
        pending.append(rb)
        pending_rows += rb.num_rows
        if pending_rows >= batch_rows:
            yield with_offsets(pending), bad
            bad, pending, pending_rows = [], [], 0
    if pending or bad:
        yield with_offsets(pending), bad


def _empty_table(task: ReadTask) -> pa.Table:
    arrays = {n: pa.array([], pa.string()) for n in task.column_names}
    return pa.table({**arrays, OFFSET_COLUMN: pa.array([], pa.int64())})


def read_parquet_task(task: ReadTask, columns: list[str],
                      batch_rows: int) -> Iterator[tuple[pa.Table, list[RejectedRow]]]:
    """Row groups as tables; ``OFFSET_COLUMN`` is each row's number in the file."""
    with FileSystems.open(task.path) as f:
        pf = pq.ParquetFile(f)
        sizes = [pf.metadata.row_group(g).num_rows for g in range(pf.metadata.num_row_groups)]
        row = sum(sizes[:task.row_groups[0]]) if task.row_groups else 0
        for rb in pf.iter_batches(batch_size=batch_rows, row_groups=list(task.row_groups), columns=columns):
            table = pa.Table.from_batches([rb])
            yield table.append_column(OFFSET_COLUMN, pa.array(np.arange(row, row + rb.num_rows), pa.int64())), []
            row += rb.num_rows


def read_task(schema: Schema, task: ReadTask, columns: list[str],
              batch_rows: int = DEFAULT_BATCH_ROWS) -> Iterator[tuple[pa.Table, list[RejectedRow]]]:
    """Raw tables (and rows rejected while splitting or decoding them) of one read task."""
    logging.getLogger(__name__).debug("reading %s", task.describe())
    if task.kind == "parquet":
        return read_parquet_task(task, columns, batch_rows)
    if task.kind == "tfrecord":
        return read_tfrecord_task(schema, task, columns, batch_rows)
    offset, data = _read_range(task)
    return read_csv_bytes(schema, task, data, batch_rows, offset)
