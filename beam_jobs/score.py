"""The batch scoring job: one daily table in, scores keyed by id out, with a drift report.

For each date (``--date 2026-11-21`` or a range ``2026-11-01:2026-11-07``) it
reads the rows matching ``--input`` (``{date}`` is replaced), validates them
with the schema that travelled with the model, scores them with the exported
SavedModel inside Beam (RunInference, model loaded once per worker) and
publishes ``OUTPUT/date=YYYY-MM-DD/`` atomically::

    part-*.parquet     id/passthrough columns, score, model_version, scoring_date
                       (or part-*.csv / part-*.tfrecord.gz with --output-format)
    rejected-*.jsonl   rows that could not be scored, with the reason
    profile.json       the day's feature profile
    drift.json         the day against the training baseline (PSI, OOV, missing, range)
    drift.html         the same as a page, one chart per feature (training vs the day)
    manifest.json      input_rows, scored_rows, rejected_rows, model, inputs, durations

With ``--output-table project:dataset.table`` the scores go to that BigQuery
table's date partition instead (``table$YYYYMMDD``, WRITE_TRUNCATE, day
partitioned on ``scoring_date``); the reports still go to ``OUTPUT/date=D/``.

Re-running a date replaces exactly that date's partition. A run that fails
leaves the published partition as it was; one that fails because too many
rows were rejected keeps its rejected rows and manifest under
``OUTPUT/_failed/date=D.<run id>/`` for inspection.
"""
from __future__ import annotations

import dataclasses
import datetime
import io
import logging
import os
import time

import apache_beam as beam
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv
from apache_beam.io.filesystem import CompressionTypes
from apache_beam.io.filesystems import FileSystems
from apache_beam.metrics import Metrics
from apache_beam.ml.inference.base import PredictionResult, RunInference
from apache_beam.options.pipeline_options import DirectOptions, PipelineOptions, StandardOptions

from ctrflow.beam_jobs import manifest as mf
from ctrflow.beam_jobs import partition
from ctrflow.beam_jobs.bigquery import is_bigquery
from ctrflow.beam_jobs.io import COUNTER_NAMESPACE, REJECTED, ReadRows, WriteRejected, counter_name
from ctrflow.beam_jobs.job_options import ScoreOptions, job_parser, parse_job_options
from ctrflow.beam_jobs.model_handler import ServingModelHandler, preload
from ctrflow.beam_jobs.options import pipeline_options, with_local_parallelism
from ctrflow.beam_jobs.profiles import ProfileCombine
from ctrflow.beam_jobs.sources import DEFAULT_RANGE_BYTES, match_files, plan_reads
from ctrflow.model.artifact import ModelMetadata, load_metadata
from ctrflow.pipeline import stats
from ctrflow.pipeline.drift import drift_report
from ctrflow.pipeline.drift_html import write_drift_html
from ctrflow.pipeline.logs import setup_logging
from ctrflow.pipeline.parsing import BatchParser
from ctrflow.schemas.errors import OptionsError, UserError
from ctrflow.schemas.flags import FlagParser

SPLIT = "score"
MIN_RANGE_BYTES = 4 << 20


class DriftError(UserError, RuntimeError):
    """Features drifted over the threshold and --fail-on-drift was given."""


def build_arg_parser() -> FlagParser:
    return job_parser(ScoreOptions, "ctrflow score",
                      "Score one daily table (or a range of dates) with a model exported by `ctrflow train`; write "
                      "scores keyed by id per date partition, rejected rows, a manifest and a drift report.")


def _base_dir(pattern: str) -> str:
    """The folder part of a pattern before any wildcard or placeholder."""
    cut = min([i for i in (pattern.find(ch) for ch in "*?[{") if i >= 0], default=len(pattern))
    head = pattern[:cut]
    return head if head.endswith("/") else os.path.dirname(head)


def _inside(path: str, folder: str) -> bool:
    if not folder:
        return False
    def norm(p: str) -> str:
        return p if "://" in p else os.path.abspath(p)

    p, f = norm(path).rstrip("/") + "/", norm(folder).rstrip("/") + "/"
    return p.startswith(f)


def check_output_location(output: str, inputs: list[str], model_dir: str) -> None:
    """Refuses outputs that could overwrite or be mixed into inputs or the model."""
    for pattern in (p for p in inputs if not is_bigquery(p)):
        base = _base_dir(pattern)
        if _inside(output, base) and base not in ("", "."):
            raise OptionsError(f"--output {output} is inside the input location {base}: refusing (scores would "
                             "be mixed into the input)")
        if _inside(base, output):
            raise OptionsError(f"--output {output} contains the input location {base}: refusing")
    if _inside(output, model_dir) or _inside(model_dir, output):
        raise OptionsError(f"--output {output} overlaps the model directory {model_dir}: refusing")


def output_arrow_schema(parser: BatchParser) -> pa.Schema:
    keys = [f for f in parser.output_schema() if parser.schema.column(f.name).is_key or f.name in parser.extra]
    return pa.schema(keys + [pa.field("score", pa.float32()), pa.field("model_version", pa.string()),
                             pa.field("scoring_date", pa.date32())])


class _ToOutputTable(beam.DoFn):
    """PredictionResult(RecordBatch, outputs) -> output table, counted as scored rows."""

    def __init__(self, schema: pa.Schema, version: str, date: str):
        self.schema, self.version, self.date = schema, version, datetime.date.fromisoformat(date)
        self.rows = Metrics.counter(COUNTER_NAMESPACE, counter_name(SPLIT, "output_rows"))

    def process(self, result):
        rb, n = result.example, result.example.num_rows
        cols = [rb.column(f.name) for f in self.schema if f.name in rb.schema.names]
        cols += [pa.array(result.inference["score"].astype(np.float32, copy=False)),
                 pa.repeat(pa.scalar(self.version, pa.string()), n),
                 pa.repeat(pa.scalar(self.date, pa.date32()), n)]
        self.rows.inc(n)
        yield pa.Table.from_arrays(cols, schema=self.schema)


# ---------------------------------------------------------------- output formats

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


_BQ_TYPES = {pa.int64(): "INT64", pa.float64(): "FLOAT64", pa.float32(): "FLOAT64", pa.string(): "STRING",
             pa.date32(): "DATE"}


def bigquery_schema(schema: pa.Schema) -> dict:
    return {"fields": [{"name": f.name, "type": _BQ_TYPES.get(f.type, "STRING"),
                        "mode": "REQUIRED" if f.name in ("score", "model_version", "scoring_date") else "NULLABLE"}
                       for f in schema]}


def bigquery_partition(table: str, date: str) -> str:
    """``project:dataset.table`` -> its date partition ``project:dataset.table$YYYYMMDD``."""
    if "$" in table:
        raise ValueError(f"--output-table {table}: give the table without a partition decorator")
    return f"{table}${date.replace('-', '')}"


def _table_to_rows(table: pa.Table):
    for row in table.to_pylist():
        row["scoring_date"] = row["scoring_date"].isoformat()
        yield row


class WriteScores(beam.PTransform):
    """Output tables -> files of one format under ``staging`` (or a BigQuery partition)."""

    def __init__(self, schema: pa.Schema, staging: str, fmt: str = "parquet", table: str | None = None,
                 date: str | None = None):
        super().__init__()
        self.schema, self.staging, self.fmt, self.table, self.date = schema, staging, fmt, table, date

    def expand(self, tables):
        prefix = os.path.join(self.staging, "part")
        if self.table:
            from apache_beam.io.gcp.bigquery import BigQueryDisposition, WriteToBigQuery
            return (tables
                    | "ToRows" >> beam.FlatMap(_table_to_rows)
                    | "WriteBigQuery" >> WriteToBigQuery(
                        table=bigquery_partition(self.table, self.date), schema=bigquery_schema(self.schema),
                        write_disposition=BigQueryDisposition.WRITE_TRUNCATE,
                        create_disposition=BigQueryDisposition.CREATE_IF_NEEDED,
                        method=WriteToBigQuery.Method.FILE_LOADS,
                        additional_bq_parameters={"timePartitioning": {"type": "DAY", "field": "scoring_date"}}))
        if self.fmt == "csv":
            return (tables
                    | "ToCsv" >> beam.Map(_table_to_csv)
                    | "WriteCsv" >> beam.io.WriteToText(prefix, file_name_suffix=".csv",
                                                        header=",".join(self.schema.names)))
        if self.fmt == "tfrecord":
            return (tables
                    | "ToExamples" >> beam.FlatMap(_table_to_examples)
                    | "WriteTFRecord" >> beam.io.WriteToTFRecord(prefix, file_name_suffix=".tfrecord.gz"))
        return tables | "WriteParquet" >> beam.io.WriteToParquetBatched(prefix, schema=self.schema,
                                                                         file_name_suffix=".parquet")


def build_pipeline(p: beam.Pipeline, meta: ModelMetadata, tasks, parser: BatchParser, staging: str, date: str,
                   options: ScoreOptions) -> None:
    schema = meta.schema
    read = p | "Read" >> ReadRows(schema, tasks, SPLIT, with_label=False, keys=True, extra=parser.extra,
                                  batch_rows=options.batch_rows)
    _ = read[REJECTED] | "Rejected" >> WriteRejected(os.path.join(staging, "rejected"))
    handler = ServingModelHandler(meta.path, inference_batch_size=options.inference_batch_size,
                                  intra_op_threads=options.model_threads)
    read.rows.element_type = pa.RecordBatch  # coders that size Arrow data without pickling it
    results = read.rows | "Score" >> RunInference(handler).with_output_types(PredictionResult)
    out_schema = output_arrow_schema(parser)
    _ = (results
         | "ToTable" >> beam.ParDo(_ToOutputTable(out_schema, meta.version, date)).with_output_types(pa.Table)
         | "Write" >> WriteScores(out_schema, staging, options.output_format, options.output_table, date))
    baseline = stats.Profile.from_dict(meta.train_stats["train"]) if meta.train_stats else stats.Profile()
    id_names = [f.name for f in meta.layout.sparse if not f.wide_only]
    _ = (results
         | "ProfileInputs" >> beam.Map(lambda r: (r.example, {n: r.inference[n] for n in id_names
                                                              if n in r.inference}))
         | "Profile" >> beam.CombineGlobally(ProfileCombine(schema, baseline.ranges))
         | "WriteProfile" >> beam.Map(lambda prof: mf.write_json(os.path.join(staging, "profile.json"),
                                                                 prof.to_dict())))


def _range_bytes(patterns: list[str]) -> int:
    """Read-task size: enough tasks (>= 8) for parallel workers to share a day evenly."""
    files = [p for p in patterns if not is_bigquery(p)]
    total = sum(size for _, size in match_files(files)) if files else 0
    return int(min(DEFAULT_RANGE_BYTES, max(MIN_RANGE_BYTES, total // 8)))


def score_date(options: ScoreOptions, meta: ModelMetadata, date: str, startup: dict | None = None) -> dict:
    """Scores one date into a staging folder, then publishes it; returns the manifest.

    ``startup``: for the first date's manifest, the seconds from process start to the job's start
    (interpreter and imports) and of the model load in the background (a callable: read once scored).
    """
    startup = startup or {}
    watch = mf.Stopwatch()
    patterns = [pattern.replace("{date}", date) for pattern in options.input]
    parser = BatchParser(meta.schema, with_label=False, keys=True, extra=options.passthrough)
    tasks, files = plan_reads(meta.schema, patterns, parser.required_columns, range_bytes=_range_bytes(patterns),
                              parser=parser)
    output = options.output.rstrip("/")
    staging = partition.staging_dir(output, date)
    final = partition.partition_dir(output, date)
    logging.info("[%s] scoring %d files (%d read tasks) with model %s", date, len(files), len(tasks), meta.version)
    watch.lap("plan")
    try:
        began = time.time()
        with beam.Pipeline(options=pipeline_options(options.beam_args)) as p:
            build_pipeline(p, meta, tasks, parser, staging, date, options)
        watch.lap("pipeline")
        parts = mf.pipeline_parts(p.result, SPLIT, began, time.time())
        counts = mf.split_counts(mf.counters(p.result), SPLIT, "output_rows")
        counts = {"input_rows": counts["input_rows"], "scored_rows": counts["output_rows"],
                  "rejected_rows": counts["rejected_rows"]}
        drift = _write_drift(meta, staging, options.psi_threshold, date)
        watch.lap("drift_report")
        manifest = {
            "job": "score", "date": date, "model": meta.path, "model_version": meta.version,
            "inputs": patterns, "input_files": files, **counts,
            "drifted_features": drift["features_over_threshold"] if drift else [],
            "psi_threshold": options.psi_threshold,
            "output": final, "output_format": "bigquery" if options.output_table else options.output_format,
            "output_table": bigquery_partition(options.output_table, date) if options.output_table else None,
            "durations_s": {**watch.stages, "pipeline_parts": parts, "total": watch.total(),
                            **{k: v() if callable(v) else v for k, v in startup.items()}},
            "versions": mf.library_versions(), "beam_options": list(options.beam_args),
            "options": options.to_dict(),
        }
        mf.write_json(os.path.join(staging, "manifest.json"), manifest)
        try:
            mf.check_counts(counts, date, "scored_rows", options.max_rejected_fraction,
                            os.path.join(partition.failed_dir(staging), "rejected-*.jsonl"))
        except mf.RejectedFractionError:
            manifest["status"] = "failed: too many rejected rows"
            mf.write_json(os.path.join(staging, "manifest.json"), manifest)
            kept = partition.keep_failed(staging)
            logging.error("[%s] run failed; its rejected rows and manifest are kept in %s (the published "
                          "partition %s is unchanged)", date, kept, final)
            raise
        partition.publish(staging, final)
    except BaseException:
        partition.discard(staging)
        raise
    logging.info("[%s] %d rows in, %d scored, %d rejected -> %s", date, counts["input_rows"],
                 counts["scored_rows"], counts["rejected_rows"], final)
    _print_summary(manifest, drift, options.psi_threshold)
    return manifest


def _print_summary(manifest: dict, drift: dict | None, threshold: float) -> None:
    """The job's summary on stdout: counts, where the output went, features over the drift threshold."""
    lines = [f"[{manifest['date']}] {manifest['input_rows']} rows in, {manifest['scored_rows']} scored, "
             f"{manifest['rejected_rows']} rejected -> {manifest['output_table'] or manifest['output']}"]
    if drift is None:
        lines.append(f"[{manifest['date']}] no drift report: the model has no training profile")
    elif drift["features_over_threshold"]:
        over = ", ".join(f"{n} (PSI {drift['features'][n]['psi']:.3f})" for n in drift["features_over_threshold"])
        lines.append(f"[{manifest['date']}] DRIFT: {len(drift['features_over_threshold'])} feature(s) over PSI "
                     f"{threshold:g}: {over}")
        lines.append(f"[{manifest['date']}] drift report: {os.path.join(manifest['output'], 'drift.html')}")
        logging.warning("[%s] drift over PSI %.2f: %s", manifest["date"], threshold, over)
    else:
        lines.append(f"[{manifest['date']}] no feature drifted over PSI {threshold:g}; report: "
                     f"{os.path.join(manifest['output'], 'drift.html')}")
    print("\n".join(lines), flush=True)


def _write_drift(meta: ModelMetadata, staging: str, threshold: float, date: str) -> dict | None:
    path = os.path.join(staging, "profile.json")
    if not meta.train_stats or not FileSystems.exists(path):
        return None
    day = stats.Profile.from_dict(mf.read_json(path))
    report = drift_report(meta.schema, meta.layout, stats.Profile.from_dict(meta.train_stats["train"]), day,
                          threshold)
    mf.write_json(os.path.join(staging, "drift.json"), report)
    try:
        write_drift_html(os.path.join(staging, "drift.html"), report, meta.schema, meta.layout,
                         model_version=meta.version, export_dir=meta.path, date=date)
    except Exception:  # noqa: BLE001 - the page is a convenience: never fail a scoring run over it
        logging.exception("[%s] could not write drift.html", date)
    return report


def _read_text(path: str) -> str | None:
    """A model file's text through Beam's filesystems (local or gs://), None if absent."""
    if not FileSystems.exists(path):
        return None
    with FileSystems.open(path, compression_type=CompressionTypes.UNCOMPRESSED) as f:
        return f.read().decode("utf-8")


def _in_process(beam_args: list[str]) -> bool:
    """True when the pipeline's workers run in this process (DirectRunner, not multi_processing)."""
    options = PipelineOptions(beam_args)
    runner = options.view_as(StandardOptions).runner or "DirectRunner"
    direct = options.view_as(DirectOptions)
    return runner in ("DirectRunner", "direct") and direct.direct_running_mode != "multi_processing"


def run(argv: list[str] | None = None) -> list[dict]:
    """Parses the flags and scores every requested date; returns their manifests."""
    return run_job(parse_job_options(ScoreOptions, build_arg_parser(), argv))


def run_job(options: ScoreOptions) -> list[dict]:
    """Scores every requested date; returns their manifests."""
    setup_logging()
    options = dataclasses.replace(options, beam_args=tuple(with_local_parallelism(list(options.beam_args))))
    startup = {"process_start": mf.process_seconds()}
    meta = load_metadata(options.model, _read_text, FileSystems.exists)
    loading = preload(meta, options.model_threads) if _in_process(list(options.beam_args)) else None
    # ^ the TF import and model load overlap planning and the Beam start
    check_output_location(options.output, list(options.input), os.path.dirname(meta.path.rstrip("/")))
    manifests = []
    for d in options.dates:
        if loading is not None and not manifests:
            startup["model_load_background"] = lambda: (getattr(loading, "load_seconds", None)
                                                        if loading.done() and not loading.exception() else None)
        manifests.append(score_date(options, meta, d, startup))
        startup = {}
    drifted = {m["date"]: m["drifted_features"] for m in manifests if m["drifted_features"]}
    if options.fail_on_drift and drifted:
        raise DriftError(f"drift over PSI {options.psi_threshold}: {drifted} (the output was written; see "
                         f"drift.html beside the scores)")
    return manifests

if __name__ == "__main__":
    run()
