"""Beam transforms for reading tables and writing rejected rows, shared by every job.

``ReadRows`` turns planned reads (``beam_jobs.input.plan.plan_reads``: file
``ReadTask``s and ``bigquery://`` queries) into clean Arrow ``RecordBatch``es
(main output) and ``RejectedRow``s (output ``REJECTED``). Rows are counted as
read and rejected as data (output ``COUNTS``, summed into the run's
``row_counts.json`` that the job's manifest reports: ``outputs.row_counts``),
and in Beam counters for progress only; nothing is dropped without a counted reason. Every finished file
task logs its rows, the running totals of this process (every worker thread of
an in-process runner), rows/s and an ETA.
"""
from __future__ import annotations

import dataclasses
import logging
import threading
import time
import uuid

import apache_beam as beam
import pyarrow as pa
from apache_beam.metrics import Metrics

import ctrflow.beam_jobs.coders  # noqa: F401 - registers the Arrow coders every job relies on
from ctrflow.beam_jobs.input import bigquery
from ctrflow.beam_jobs.input.plan import DEFAULT_BATCH_ROWS, check_first_rows
from ctrflow.beam_jobs.input.prefetch import prefetched
from ctrflow.beam_jobs.input.readers import read_task
from ctrflow.beam_jobs.input.tasks import InputError, Read, ReadTask
from ctrflow.pipeline.parsing import BatchParser, RejectedRow
from ctrflow.schemas.types import Schema

REJECTED = "rejected"
COUNTS = "counts"  # {"<split>/input_rows": n, "<split>/rejected_rows": n} per chunk (outputs.row_counts)
TASK_START_MS, TASK_END_MS = "task_start_ms", "task_end_ms"
COUNTER_NAMESPACE = "ctrflow"


def counter_name(split: str, what: str) -> str:
    return f"{split}/{what}"


@dataclasses.dataclass(frozen=True)
class _Rows:
    """A chunk of BigQuery rows (dicts) and the spec they came from."""

    spec: str
    rows: list


class _Progress:
    """Read progress of one split in this process, shared by its worker threads."""

    def __init__(self):
        self.lock = threading.Lock()
        self.started = None
        self.tasks = self.bytes = self.rows = 0

    def start(self) -> None:
        with self.lock:
            self.started = self.started or time.time()

    def add(self, tasks: int, nbytes: int, rows: int) -> tuple[int, int, int, float]:
        with self.lock:
            self.tasks += tasks
            self.bytes += nbytes
            self.rows += rows
            return self.tasks, self.bytes, self.rows, time.time() - (self.started or time.time())


_PROGRESS: dict[str, _Progress] = {}  # by read id: one per ReadRows of one pipeline
_PROGRESS_LOCK = threading.Lock()


def _progress(read_id: str) -> _Progress:
    with _PROGRESS_LOCK:
        return _PROGRESS.setdefault(read_id, _Progress())


class _ParseFn(beam.DoFn):
    """Read tasks or BigQuery row chunks -> clean batches + tagged rejected rows, counted."""

    def __init__(self, schema: Schema, split: str, with_label: bool, keys: bool, extra: tuple[str, ...],
                 batch_rows: int, total_tasks: int, total_bytes: int, locator: bool = False,
                 prefetch: bool = False):
        self.schema, self.split, self.batch_rows, self.locator = schema, split, batch_rows, locator
        self.prefetch = prefetch
        self.with_label, self.keys, self.extra = with_label, keys, extra
        self.total_tasks, self.total_bytes = total_tasks, total_bytes
        self.read_id = uuid.uuid4().hex
        self.input_rows = Metrics.counter(COUNTER_NAMESPACE, counter_name(split, "input_rows"))
        self.rejected_rows = Metrics.counter(COUNTER_NAMESPACE, counter_name(split, "rejected_rows"))
        self.tasks_done = Metrics.counter(COUNTER_NAMESPACE, counter_name(split, "read_tasks"))
        # wall-clock ms at which read tasks start and end: the job's manifest splits its pipeline time into
        # start-up (before the first task), reading/scoring, and finalize (after the last) with their min/max
        self.task_start_ms = Metrics.distribution(COUNTER_NAMESPACE, counter_name(split, TASK_START_MS))
        self.task_end_ms = Metrics.distribution(COUNTER_NAMESPACE, counter_name(split, TASK_END_MS))

    def setup(self):
        self.parser = BatchParser(self.schema, with_label=self.with_label, keys=self.keys, extra=self.extra,
                                  locator=self.locator)
        self.progress = _progress(self.read_id)
        self.done_rows = 0

    def process(self, element):
        if isinstance(element, _Rows):
            yield from self._rows(element)
        else:
            yield from self._task(element)

    def _parse(self, raw, source: str):
        return self.parser.parse(raw, source) if raw.num_rows else None

    def _emit(self, raw, bad: list[RejectedRow], parsed, source: str, check: ReadTask | None):
        all_bad = bad + (parsed.rejected if parsed else [])
        n_in = raw.num_rows + len(bad)
        if check is not None:
            check_first_rows(self.schema, check, n_in, all_bad)
        self.input_rows.inc(n_in)
        self.rejected_rows.inc(len(all_bad))
        # the counts as data: metrics are runner-dependent (none on Dask, attempted-only on portable runners)
        yield beam.pvalue.TaggedOutput(COUNTS, {counter_name(self.split, "input_rows"): n_in,
                                                counter_name(self.split, "rejected_rows"): len(all_bad)})
        if parsed is not None and parsed.batch.num_rows:
            yield parsed.batch
        for r in all_bad:
            yield beam.pvalue.TaggedOutput(REJECTED, r)
        self.done_rows += n_in

    def _task(self, task: ReadTask):
        self.progress.start()
        t0, rows_before, first = time.time(), self.done_rows, True
        self.task_start_ms.update(int(t0 * 1000))
        batches = ((raw, bad, self._parse(raw, task.path))
                   for raw, bad in read_task(self.schema, task, self.parser.required_columns, self.batch_rows))
        for raw, bad, parsed in prefetched(batches) if self.prefetch else batches:
            yield from self._emit(raw, bad, parsed, task.path, task if first else None)
            first = False
        self.tasks_done.inc()
        self.task_end_ms.update(int(time.time() * 1000))
        self._log_progress(task, self.done_rows - rows_before, time.time() - t0)

    def _rows(self, chunk: _Rows):
        columns = self.parser.required_columns
        missing = [c for c in columns if chunk.rows and c not in chunk.rows[0]]
        if missing:
            raise InputError(f"input {chunk.spec}: column {missing[0]!r} required by schema {self.schema.source} "
                             f"is missing from the query result (all missing: {missing})")
        raw = bigquery.rows_to_table(chunk.rows, columns)
        yield from self._emit(raw, [], self._parse(raw, chunk.spec), chunk.spec, None)

    def _log_progress(self, task: ReadTask, rows: int, seconds: float) -> None:
        tasks, done_bytes, done_rows, elapsed = self.progress.add(1, task.size, rows)
        share = done_bytes / self.total_bytes if self.total_bytes else 0.0
        rate = f", {done_rows / elapsed:,.0f} rows/s" if elapsed > 0 else ""
        eta = f", ETA {elapsed * (1 - share) / share:.0f}s" if 0 < share < 1 else ""
        logging.info("[%s] read %s: %d rows in %.1fs | this process: %d of %d tasks, %d rows, %.0f%% of %d MB%s%s",
                     self.split, task.describe(), rows, seconds, tasks, self.total_tasks, done_rows,
                     100 * share, self.total_bytes >> 20, rate, eta)


class ReadRows(beam.PTransform):
    """Planned reads -> clean RecordBatches, with rejected rows tagged ``REJECTED`` and row counts ``COUNTS``."""

    def __init__(self, schema: Schema, tasks: list[Read], split: str, *, with_label: bool,
                 keys: bool, extra: tuple[str, ...] = (), batch_rows: int = DEFAULT_BATCH_ROWS,
                 locator: bool = False, prefetch: bool = False):
        super().__init__()
        self.locator = locator  # add source_file/source_offset to the clean rows (pipeline.parsing)
        # read and parse a file's next batches in a background thread (beam_jobs.input.prefetch), for a job whose
        # runner has one worker thread (preprocess), where it uses the second core (next to the two encode threads
        # of beam_jobs.outputs.tfrecord_writer)
        self.prefetch = prefetch
        self.schema, self.tasks, self.split = schema, tasks, split
        self.with_label, self.keys, self.extra, self.batch_rows = with_label, keys, tuple(extra), batch_rows

    def expand(self, pbegin):
        files = [t for t in self.tasks if isinstance(t, ReadTask)]
        queries = [t for t in self.tasks if isinstance(t, bigquery.BigQueryRead)]
        total_bytes = sum(t.size for t in files)
        logging.info("[%s] reading %d file tasks (%d MB) and %d BigQuery queries", self.split, len(files),
                     total_bytes >> 20, len(queries))
        parts = []
        if files:
            # one reshuffle spreads the tasks over workers; Create's own would be one more Beam stage
            parts.append(pbegin | "Tasks" >> beam.Create(files, reshuffle=False) | "Distribute" >> beam.Reshuffle())
        for i, read in enumerate(queries):
            parts.append(pbegin
                         | f"BigQuery{i}" >> bigquery.read_transform(read)
                         | f"Chunk{i}" >> beam.BatchElements(min_batch_size=self.batch_rows // 8,
                                                             max_batch_size=self.batch_rows)
                         | f"Rows{i}" >> beam.Map(lambda rows, spec: _Rows(spec, rows), read.spec))
        if not parts:
            parts.append(pbegin | "NoInput" >> beam.Create([]))
        reads = parts[0] if len(parts) == 1 else tuple(parts) | "AllReads" >> beam.Flatten()
        fn = _ParseFn(self.schema, self.split, self.with_label, self.keys, self.extra, self.batch_rows,
                      len(files), total_bytes, self.locator, self.prefetch)
        result = reads | "Parse" >> beam.ParDo(fn).with_outputs(REJECTED, COUNTS, main="rows")
        # typed, so Beam's element-size sampling uses the Arrow coder's nbytes instead of pickling every
        # batch (beam_jobs.coders); untyped, every batch was pickled once more just to be measured
        result.rows.element_type = pa.RecordBatch
        return result


class WriteRejected(beam.PTransform):
    """Rejected rows as JSON lines ({source, row, reason}) under ``prefix``."""

    def __init__(self, prefix: str):
        super().__init__()
        self.prefix = prefix

    def expand(self, rejected):
        return (rejected
                | "ToJson" >> beam.Map(RejectedRow.to_json)
                | "Write" >> beam.io.WriteToText(self.prefix, file_name_suffix=".jsonl"))
