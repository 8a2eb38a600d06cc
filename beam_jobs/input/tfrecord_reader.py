"""Reading tf.Examples from TFRecord files back as Arrow tables of raw columns (a scoring input format)."""
from __future__ import annotations

import base64
import json
import struct
from collections.abc import Iterator

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
from apache_beam.io.filesystem import CompressionTypes
from apache_beam.io.filesystems import FileSystems
from tfx_bsl.coders import example_coder

from ctrflow.beam_jobs.input.tasks import InputError, ReadTask
from ctrflow.pipeline.parsing import OFFSET_COLUMN, RejectedRow
from ctrflow.schemas.types import Schema


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
        first = 0  # OFFSET_COLUMN: the record's number in the file
        while True:
            chunk = [r for _, r in zip(range(batch_rows), records)]
            if not chunk:
                return
            yield _examples_to_table(schema, decoder, chunk, columns, task.path, first)
            first += len(chunk)


def _examples_to_table(schema: Schema, decoder, records: list[bytes], columns: list[str],
                       path: str, first: int = 0) -> tuple[pa.Table, list[RejectedRow]]:
    try:
        batch = decoder.DecodeBatch(records)
    except RuntimeError:  # a record that is not a tf.Example, or a feature whose type changes between records
        batch = None
    if batch is not None:
        return _scalar_table(schema, batch, columns, path, first)
    tables, bad = [], []
    for i, record in enumerate(records):
        try:
            one = decoder.DecodeBatch([record])
        except RuntimeError as e:
            bad.append(RejectedRow(source=path, row=base64.b64encode(record).decode(),
                                   reason=f"not a tf.Example: {e}", offset=first + i))
            continue
        table, rejected = _scalar_table(schema, one, columns, path, first + i)
        tables.append(table.cast(pa.schema([(n, pa.string()) for n in columns] + [(OFFSET_COLUMN, pa.int64())])))
        bad += rejected
    empty = pa.table({**{n: pa.array([], pa.string()) for n in columns}, OFFSET_COLUMN: pa.array([], pa.int64())})
    return pa.concat_tables([empty] + tables), bad


def _scalar_table(schema: Schema, rb: pa.RecordBatch, columns: list[str],
                  path: str, first_record: int = 0) -> tuple[pa.Table, list[RejectedRow]]:
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
    arrays[OFFSET_COLUMN] = pa.array(np.arange(first_record, first_record + n), pa.int64())
    table = pa.table(arrays)
    if not many.any():
        return table, []
    bad = [RejectedRow(source=path, row=json.dumps(_example_row(rb, i), ensure_ascii=False), reason=reasons[i],
                       offset=first_record + i) for i in sorted(reasons)]
    return table.filter(pa.array(~many)), bad


def _multivalent_delimiter(schema: Schema, name: str) -> str | None:
    col = next((c for c in schema.columns if c.name == name), None)
    return col.categorical.multivalent_delimiter if col is not None and col.categorical else None


def _example_row(rb: pa.RecordBatch, i: int) -> dict:
    row = rb.slice(i, 1).to_pylist()[0]
    return {k: [x.decode("utf-8", "replace") if isinstance(x, bytes) else x for x in v] if v else v
            for k, v in row.items()}
