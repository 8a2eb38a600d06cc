"""Where scores go: output tables encoded as Parquet, CSV or tf.Example files.

``beam_jobs.scoring.job`` builds the pipeline; this module only turns its Arrow
output tables into files of one format under the run's folder.
"""
from __future__ import annotations

import io
import os

import apache_beam as beam
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv

from ctrflow.pipeline import artifacts as af


def _table_to_csv(table: pa.Table) -> str:
    """Rows as CSV lines (no header, no trailing newline) for WriteToText."""
    buf = io.BytesIO()
    pacsv.write_csv(table, buf, pacsv.WriteOptions(include_header=False))
    return buf.getvalue().decode("utf-8").rstrip("\n")


def _as_list_column(arr: pa.Array) -> pa.Array:
    """A column as one-value lists (empty where null), the form tf.Example encoding takes."""
    if pa.types.is_date(arr.type):
        arr = pc.strftime(arr, format="%Y-%m-%d")
    if pa.types.is_string(arr.type) or pa.types.is_large_string(arr.type):
        arr = arr.cast(pa.binary())
    elif pa.types.is_floating(arr.type):
        arr = arr.cast(pa.float32())
    elif pa.types.is_integer(arr.type) or pa.types.is_boolean(arr.type):
        arr = arr.cast(pa.int64())
    valid = np.ones(len(arr), bool) if not arr.null_count else ~np.asarray(arr.is_null())
    offsets = np.concatenate([[0], np.cumsum(valid)]).astype(np.int32)
    return pa.ListArray.from_arrays(pa.array(offsets), arr.drop_null() if arr.null_count else arr)


def _table_to_examples(table: pa.Table):
    from tfx_bsl.coders import example_coder

    for rb in table.to_batches():
        lists = pa.RecordBatch.from_arrays([_as_list_column(c) for c in rb.columns], names=rb.schema.names)
        yield from example_coder.RecordBatchToExamples(lists)


class WriteScores(beam.PTransform):
    """Output tables -> files of one format in a score run's version folder.

    A BigQuery ``--output-table`` is not written here: the job writes Parquet
    and loads it after its checks passed (``beam_jobs.outputs.bigquery_scores``).
    """

    def __init__(self, schema: pa.Schema, version_dir: str, fmt: str = "parquet"):
        super().__init__()
        self.schema, self.version_dir, self.fmt = schema, version_dir, fmt

    def expand(self, tables):
        prefix = os.path.join(self.version_dir, af.PART_PREFIX)
        if self.fmt == "csv":
            return (tables
                    | "ToCsv" >> beam.Map(_table_to_csv)
                    | "WriteCsv" >> beam.io.WriteToText(prefix, file_name_suffix=".csv",
                                                        header=",".join(self.schema.names)))
        if self.fmt == "tfrecord":
            return (tables
                    | "ToExamples" >> beam.FlatMap(_table_to_examples)
                    | "WriteTFRecord" >> beam.io.WriteToTFRecord(prefix, file_name_suffix=af.TFRECORD_SUFFIX))
        return tables | "WriteParquet" >> beam.io.WriteToParquetBatched(prefix, schema=self.schema,
                                                                         file_name_suffix=".parquet")
