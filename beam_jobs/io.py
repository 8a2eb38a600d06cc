"""Beam transforms for reading tables and writing rejected rows, shared by every job.

``ReadRows`` turns planned ``ReadTask``s into clean Arrow ``RecordBatch``es
(main output) and ``RejectedRow``s (output ``REJECTED``). Each task's rows are
counted as read, clean and rejected in Beam counters under ``<split>``, which
the job's manifest reports; nothing is dropped without a counted reason.
"""
from __future__ import annotations

import collections
import logging
import time

import apache_beam as beam
from apache_beam.metrics import Metrics

from beam_jobs.sources import InputError, ReadTask, read_task
from pipeline.parsing import BatchParser, RejectedRow
from schemas.types import Schema

REJECTED = "rejected"
COUNTER_NAMESPACE = "ctrflow"


def counter_name(split: str, what: str) -> str:
    return f"{split}/{what}"


class _ReadTaskFn(beam.DoFn):
    def __init__(self, schema: Schema, split: str, with_label: bool, keys: bool, extra: tuple[str, ...],
                 batch_rows: int):
        self.schema, self.split, self.batch_rows = schema, split, batch_rows
        self.with_label, self.keys, self.extra = with_label, keys, extra
        self.input_rows = Metrics.counter(COUNTER_NAMESPACE, counter_name(split, "input_rows"))
        self.rejected_rows = Metrics.counter(COUNTER_NAMESPACE, counter_name(split, "rejected_rows"))
        self.tasks_done = Metrics.counter(COUNTER_NAMESPACE, counter_name(split, "read_tasks"))

    def setup(self):
        self.parser = BatchParser(self.schema, with_label=self.with_label, keys=self.keys, extra=self.extra)

    def process(self, task: ReadTask):
        t0, rows, rejected = time.time(), 0, 0
        columns = self.parser.required_columns
        for raw, bad in read_task(self.schema, task, columns, self.batch_rows):
            parsed = self.parser.parse(raw, task.path) if raw.num_rows else None
            all_bad = bad + (parsed.rejected if parsed else [])
            n_in = raw.num_rows + len(bad)
            _fail_on_wrong_schema(self.schema, task, rows, n_in, all_bad)
            rows += n_in
            rejected += len(all_bad)
            self.input_rows.inc(n_in)
            self.rejected_rows.inc(len(all_bad))
            if parsed is not None and parsed.batch.num_rows:
                yield parsed.batch
            for r in all_bad:
                yield beam.pvalue.TaggedOutput(REJECTED, r)
        self.tasks_done.inc()
        logging.info("[%s] read %s: %d rows, %d rejected, %.1fs", self.split, task.describe(), rows,
                     rejected, time.time() - t0)


def _fail_on_wrong_schema(schema: Schema, task: ReadTask, rows_before: int, n: int,
                          bad: list[RejectedRow]) -> None:
    """A file whose first rows are mostly rejected for one reason has the wrong schema."""
    if rows_before or task.start or n < 10 or len(bad) * 2 <= n:
        return
    reason, count = collections.Counter(_reason_kind(r.reason) for r in bad).most_common(1)[0]
    if count * 2 > n:
        raise InputError(f"input {task.path}: {count} of the first {n} rows are rejected ({reason}); "
                         f"does schema {schema.source} describe this file?")


def _reason_kind(reason: str) -> str:
    """Groups reasons that differ only by the offending value."""
    return reason.split(": cannot parse")[0].split(" is not one of")[0] if ": " in reason else reason


class ReadRows(beam.PTransform):
    """Read tasks -> clean RecordBatches, with rejected rows tagged ``REJECTED``."""

    def __init__(self, schema: Schema, tasks: list[ReadTask], split: str, *, with_label: bool,
                 keys: bool, extra: tuple[str, ...] = (), batch_rows: int = 65536):
        super().__init__()
        self.schema, self.tasks, self.split = schema, tasks, split
        self.with_label, self.keys, self.extra, self.batch_rows = with_label, keys, tuple(extra), batch_rows

    def expand(self, pbegin):
        return (pbegin
                | "Tasks" >> beam.Create(self.tasks)
                | "Distribute" >> beam.Reshuffle()
                | "Parse" >> beam.ParDo(_ReadTaskFn(self.schema, self.split, self.with_label, self.keys,
                                                    self.extra, self.batch_rows))
                .with_outputs(REJECTED, main="rows"))


class WriteRejected(beam.PTransform):
    """Rejected rows as JSON lines ({source, row, reason}) under ``prefix``."""

    def __init__(self, prefix: str):
        super().__init__()
        self.prefix = prefix

    def expand(self, rejected):
        return (rejected
                | "ToJson" >> beam.Map(RejectedRow.to_json)
                | "Write" >> beam.io.WriteToText(self.prefix, file_name_suffix=".jsonl"))
