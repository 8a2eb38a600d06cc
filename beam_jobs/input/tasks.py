"""What a planned read is: a ``ReadTask`` (a piece of one file) or a BigQuery query.

Shared by the planner (``beam_jobs.input.plan``) and the format readers
(``beam_jobs.input.readers``, ``beam_jobs.outputs.tfrecord_writer``), so neither imports the other's internals.
"""
from __future__ import annotations

import dataclasses

from ctrflow.beam_jobs.input.bigquery import BigQueryRead
from ctrflow.common.errors import UserError

DEFAULT_BATCH_ROWS = 65536  # rows per Arrow batch (--batch-rows)


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


Read = ReadTask | BigQueryRead
