"""The batch scoring job: one daily table in, scores keyed by id out, with a drift report.

For each date (``--date 2026-11-21`` or a range ``2026-11-01:2026-11-07``) it
reads the rows matching ``--input`` (``{date}`` is replaced), validates them
with the schema that travelled with the model, scores them with the exported
SavedModel inside Beam (RunInference, model loaded once per worker) into a
new version folder ``OUTPUT/date=YYYY-MM-DD/v=<run id>/`` and publishes it
all-or-nothing (``_SUCCESS``, then ``OUTPUT/date=D/_LATEST``; ``beam_jobs.outputs.publish``)::

    part-*.parquet     id/passthrough columns, score, model_version, scoring_date; without an id
                       column also source_file, source_offset (the row locator)
                       (or part-*.csv / part-*.tfrecord.gz with --output-format)
    rejected-*.jsonl   rows that could not be scored, with the reason
    profile.json       the day's feature profile
    drift.json         the day against the training baseline (PSI, OOV, missing, range)
    drift.html         the same as a page, one chart per feature (training vs the day)
    row_counts.json    rows read, scored and rejected, counted as data in the pipeline (outputs.row_counts)
    manifest.json      input_rows, scored_rows, rejected_rows, model, inputs, durations

With ``--output-table project:dataset.table`` the Parquet scores are also
loaded into that BigQuery table's date partition (``table$YYYYMMDD``, day
partitioned on ``scoring_date``), only after the rejected-rows check passed
(``beam_jobs.outputs.bigquery_scores``).

Re-running a date replaces exactly that date's partition. A run that fails
leaves the published partition as it was; one that fails because too many
rows were rejected keeps its rejected rows and manifest under
``OUTPUT/_failed/date=D.<run id>/`` for inspection.
"""
from __future__ import annotations

import concurrent.futures
import dataclasses
import datetime
import logging
import os
import time

import apache_beam as beam
import numpy as np
import pyarrow as pa
from apache_beam.io.filesystem import CompressionTypes
from apache_beam.io.filesystems import FileSystems
from apache_beam.metrics import Metrics
from apache_beam.ml.inference.base import PredictionResult, RunInference
from apache_beam.options.pipeline_options import DirectOptions, PipelineOptions

from ctrflow.beam_jobs.input.bigquery import is_bigquery
from ctrflow.beam_jobs.input.globs import check_output_location
from ctrflow.beam_jobs.input.plan import match_files, plan_reads
from ctrflow.beam_jobs.input.transforms import (
    COUNTER_NAMESPACE,
    COUNTS,
    REJECTED,
    ReadRows,
    WriteRejected,
    counter_name,
)
from ctrflow.beam_jobs.options import ScoreOptions, job_parser, parse_job_options
from ctrflow.beam_jobs.outputs import bigquery_scores as bq_out
from ctrflow.beam_jobs.outputs import date_partitions as partition
from ctrflow.beam_jobs.outputs import manifest as mf
from ctrflow.beam_jobs.outputs.bigquery_scores import bigquery_partition
from ctrflow.beam_jobs.outputs.profiles import ProfileBatches, empty_profile
from ctrflow.beam_jobs.outputs.row_counts import WriteRowCounts, count_of, read_row_counts
from ctrflow.beam_jobs.outputs.score_tables import WriteScores
from ctrflow.beam_jobs.runners import is_direct_runner, new_pipeline, with_local_parallelism
from ctrflow.beam_jobs.scoring import prediction_drift as score_drift
from ctrflow.beam_jobs.scoring.duplicate_ids import CountDuplicateIds
from ctrflow.beam_jobs.scoring.model_handler import ServingModelHandler, preload
from ctrflow.common import compat
from ctrflow.common.errors import ExitCode, UserError
from ctrflow.common.flags import FlagParser
from ctrflow.common.logs import setup_logging
from ctrflow.model.artifact import ModelMetadata, load_metadata
from ctrflow.pipeline import artifacts as af
from ctrflow.pipeline import stats
from ctrflow.pipeline.drift import drift_report
from ctrflow.pipeline.drift_html import write_drift_html
from ctrflow.pipeline.parsing import LOCATOR_FIELDS, BatchParser

SPLIT = "score"
MIN_RANGE_BYTES, MAX_RANGE_BYTES = 4 << 20, 16 << 20  # read-task size bounds (``_range_bytes``)


class DriftError(UserError, RuntimeError):
    """Features drifted over the threshold and --fail-on-drift was given."""

    exit_code = ExitCode.DRIFT


def build_arg_parser() -> FlagParser:
    return job_parser(ScoreOptions, "ctrflow score",
                      "Score one daily table (or a range of dates) with a model exported by `ctrflow train`; write "
                      "scores keyed by id per date partition, rejected rows, a manifest and a drift report.")


def has_id(schema) -> bool:
    return any(c.role == "id" for c in schema.columns)


def output_arrow_schema(parser: BatchParser) -> pa.Schema:
    keys = [f for f in parser.output_schema()
            if f.name in LOCATOR_FIELDS or f.name in parser.extra or parser.schema.column(f.name).is_key]
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


def build_pipeline(p: beam.Pipeline, meta: ModelMetadata, tasks, parser: BatchParser, version_dir: str, date: str,
                   options: ScoreOptions) -> None:
    schema = meta.schema
    read = p | "Read" >> ReadRows(schema, tasks, SPLIT, with_label=False, keys=True, extra=parser.extra,
                                  batch_rows=options.batch_rows, locator=parser.locator)
    _ = read[REJECTED] | "Rejected" >> WriteRejected(os.path.join(version_dir, af.REJECTED))
    handler = ServingModelHandler(meta.path, inference_batch_size=options.inference_batch_size,
                                  intra_op_threads=options.model_threads)
    results = read.rows | "Score" >> RunInference(handler).with_output_types(PredictionResult)
    out_schema = output_arrow_schema(parser)
    tables = (results
              | "ToTable" >> beam.ParDo(_ToOutputTable(out_schema, meta.version, date)).with_output_types(pa.Table))
    _ = tables | "Write" >> WriteScores(out_schema, version_dir, "parquet" if options.output_table
                                        else options.output_format)
    counts = [read[COUNTS], tables | "CountScored" >> count_of(counter_name(SPLIT, "output_rows"), _num_rows)]
    score_drift.profile_scores(results, meta, version_dir)
    baseline = stats.Profile.from_dict(meta.train_stats["train"]) if meta.train_stats else stats.Profile()
    id_names = [f.name for f in meta.layout.sparse if not f.wide_only]
    _ = (results
         | "Profile" >> ProfileBatches(schema, lambda r: (r.example, {n: r.inference[n] for n in id_names
                                                                      if n in r.inference}), baseline.ranges,
                                       default=False)  # a day without rows: written by _write_empty_profiles
         | "WriteProfile" >> beam.Map(lambda prof: mf.write_json(os.path.join(version_dir, af.PROFILE),
                                                                 prof.to_dict())))
    ids = tuple(c.name for c in schema.columns if c.role == "id")
    if ids:  # duplicated ids are scored (they are input rows) and counted for the manifest
        duplicates = (read.rows
                      | "DuplicateIds" >> CountDuplicateIds(ids)
                      | "CountDuplicates" >> beam.Map(_count_duplicates))
        counts.append(duplicates)
    _ = tuple(counts) | "RowCounts" >> WriteRowCounts(version_dir)


def _num_rows(table: pa.Table) -> int:
    return table.num_rows


def _count_duplicates(n: int) -> dict[str, int]:
    Metrics.counter(COUNTER_NAMESPACE, counter_name(SPLIT, "duplicate_id_rows")).inc(n)  # progress only
    return {counter_name(SPLIT, "duplicate_id_rows"): n}


def _range_bytes(patterns: list[str]) -> int:
    """Read-task size: a day in at least 16 tasks of at most 16 MB, so parallel workers end it together.

    A worker scores its last task alone while the others are done, and holds
    a task's bytes and batches in memory. Against fewer, larger tasks (at
    least 8 of at most 64 MB) this was faster and used less peak memory on the
    scoring benchmark with 2 worker threads; more or larger tasks gained
    nothing.
    """
    files = [p for p in patterns if not is_bigquery(p)]
    total = sum(size for _, size in match_files(files)) if files else 0
    return int(min(MAX_RANGE_BYTES, max(MIN_RANGE_BYTES, total // 16)))


def score_date(options: ScoreOptions, meta: ModelMetadata, date: str, startup: dict | None = None) -> dict:
    """Scores one date into a new version folder, then publishes it; returns the manifest.

    ``startup``: for the first date's manifest, the seconds from process start to the job's start
    (interpreter and imports) and of the model load in the background (a callable: read once scored).
    """
    startup = startup or {}
    watch = mf.Stopwatch()
    patterns = [pattern.replace("{date}", date) for pattern in options.input]
    # without an id column each score carries where its row came from (source_file, source_offset)
    parser = BatchParser(meta.schema, with_label=False, keys=True, extra=options.passthrough,
                         locator=not has_id(meta.schema))
    tasks, files = plan_reads(meta.schema, patterns, parser.required_columns, range_bytes=_range_bytes(patterns),
                              parser=parser)
    output = options.output.rstrip("/")
    version_dir = partition.staging_dir(output, date)  # this run's version folder, live once published
    final = partition.partition_dir(output, date)
    logging.info("[%s] scoring %d files (%d read tasks) with model %s", date, len(files), len(tasks), meta.version)
    watch.lap("plan")
    try:
        began = time.time()
        with new_pipeline(options.beam_args) as p:
            build_pipeline(p, meta, tasks, parser, version_dir, date, options)
        watch.lap("pipeline")
        parts = mf.pipeline_parts(p.result, SPLIT, began, time.time())
        found = read_row_counts(version_dir)
        counts = mf.split_counts(found, SPLIT, "output_rows")
        counts = {"input_rows": counts["input_rows"], "scored_rows": counts["output_rows"],
                  "rejected_rows": counts["rejected_rows"]}
        duplicates = found.get(counter_name(SPLIT, "duplicate_id_rows"), 0) if has_id(meta.schema) else None
        _write_empty_profiles(meta, version_dir)
        drift = _write_drift(meta, version_dir, options.psi_threshold, date)
        watch.lap("drift_report")
        manifest = {
            "job": "score", "date": date, "model": meta.path, "model_version": meta.version,
            "inputs": patterns, "input_files": files, **counts, "duplicate_id_rows": duplicates,
            "row_locator": None if has_id(meta.schema) else list(LOCATOR_FIELDS),
            "drifted_features": drift["features_over_threshold"] if drift else [],
            "psi_threshold": options.psi_threshold,
            "output": version_dir, "partition": final, "version": os.path.basename(version_dir),
            "output_format": "bigquery" if options.output_table else options.output_format,
            "output_table": bigquery_partition(options.output_table, date) if options.output_table else None,
            "durations_s": {**watch.stages, "pipeline_parts": parts, "total": watch.total(),
                            **{k: v() if callable(v) else v for k, v in startup.items()}},
            "versions": mf.library_versions(), "compat": compat.manifest(), "beam_options": list(options.beam_args),
            "options": options.to_dict(),
        }
        mf.write_json(os.path.join(version_dir, af.MANIFEST), manifest)
        try:
            mf.check_counts(counts, date, "scored_rows", options.max_rejected_fraction,
                            os.path.join(partition.failed_dir(version_dir), "rejected-*.jsonl"))
        except mf.RejectedFractionError:
            manifest["status"] = "failed: too many rejected rows"
            mf.write_json(os.path.join(version_dir, af.MANIFEST), manifest)
            kept = partition.keep_failed(version_dir)
            logging.error("[%s] run failed; its rejected rows and manifest are kept in %s (the published "
                          "partition %s is unchanged)", date, kept, final)
            raise
        if options.output_table:  # only now, after the checks: the table's partition is replaced in one copy job
            manifest["bigquery"] = bq_out.replace_partition(
                options.output_table, date, partition_files(version_dir), output_arrow_schema(parser),
                run_id=os.path.basename(version_dir))
            mf.write_json(os.path.join(version_dir, af.MANIFEST), manifest)
        partition.publish(version_dir)
    except BaseException:
        partition.discard(version_dir)
        raise
    logging.info("[%s] %d rows in, %d scored, %d rejected -> %s", date, counts["input_rows"],
                 counts["scored_rows"], counts["rejected_rows"], final)
    _print_summary(manifest, drift, options.psi_threshold)
    return manifest


def partition_files(version_dir: str) -> list[str]:
    """The score files of a run's folder (what a BigQuery load takes)."""
    matched = FileSystems.match([os.path.join(version_dir, af.SCORE_PARQUET_FILES)])[0]
    return sorted(m.path for m in matched.metadata_list)


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
        lines.append(f"[{manifest['date']}] drift report: {os.path.join(manifest['output'], af.DRIFT_HTML)}")
        logging.warning("[%s] drift over PSI %.2f: %s", manifest["date"], threshold, over)
    else:
        lines.append(f"[{manifest['date']}] no feature drifted over PSI {threshold:g}; report: "
                     f"{os.path.join(manifest['output'], af.DRIFT_HTML)}")
    print("\n".join(lines), flush=True)


def _write_empty_profiles(meta: ModelMetadata, version_dir: str) -> None:
    """A day without rows: the profiles of no rows, which the pipeline's combines (without Beam's default
    value: three Beam stages less in every run) did not write."""
    path = os.path.join(version_dir, af.PROFILE)
    if not FileSystems.exists(path):
        mf.write_json(path, empty_profile().to_dict())
    score_drift.write_empty_if_missing(meta, version_dir)


def _write_drift(meta: ModelMetadata, version_dir: str, threshold: float, date: str) -> dict | None:
    path = os.path.join(version_dir, af.PROFILE)
    if not meta.train_stats or not FileSystems.exists(path):
        return None
    day = stats.Profile.from_dict(mf.read_json(path))
    report = drift_report(meta.schema, meta.layout, stats.Profile.from_dict(meta.train_stats["train"]), day,
                          threshold)
    report["prediction"] = score_drift.prediction_section(meta, version_dir)  # score PSI vs the model's eval scores
    mf.write_json(os.path.join(version_dir, af.DRIFT), report)
    try:
        write_drift_html(os.path.join(version_dir, af.DRIFT_HTML), report, meta.schema, meta.layout,
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
    return is_direct_runner(options) and options.view_as(DirectOptions).direct_running_mode != "multi_processing"


def run(argv: list[str] | None = None) -> list[dict]:
    """Parses the flags and scores every requested date; returns their manifests."""
    return run_job(parse_job_options(ScoreOptions, build_arg_parser(), argv))


def run_job(options: ScoreOptions) -> list[dict]:
    """Scores every requested date; returns their manifests."""
    setup_logging()
    options = dataclasses.replace(options, beam_args=tuple(with_local_parallelism(list(options.beam_args))))
    startup = {"process_start": mf.process_seconds()}
    meta = load_metadata(options.model, _read_text, FileSystems.exists)
    loading = (preload(meta, options.model_threads, inference_batch_size=options.inference_batch_size)
               if _in_process(list(options.beam_args)) else None)
    # ^ the TF import and model load overlap planning and the Beam start
    manifests = []
    try:
        check_output_location(options.output, list(options.input), os.path.dirname(meta.path.rstrip("/")))
        for d in options.dates:
            if loading is not None and not manifests:
                startup["model_load_background"] = lambda: (getattr(loading, "load_seconds", None)
                                                            if loading.done() and not loading.exception() else None)
            manifests.append(score_date(options, meta, d, startup))
            startup = {}
    except BaseException:
        if loading is not None:  # an interpreter that exits while TF loads in the daemon thread aborts (SIGABRT)
            concurrent.futures.wait([loading])
        raise
    drifted = {m["date"]: m["drifted_features"] for m in manifests if m["drifted_features"]}
    if options.fail_on_drift and drifted:
        raise DriftError(f"drift over PSI {options.psi_threshold}: {drifted} (the output was written; see "
                         f"drift.html beside the scores)")
    return manifests

if __name__ == "__main__":
    run()
