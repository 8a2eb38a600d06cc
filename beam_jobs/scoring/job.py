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
import re
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
from ctrflow.beam_jobs.input.plan import match_files, plan_reads
from ctrflow.beam_jobs.input.transforms import COUNTER_NAMESPACE, REJECTED, ReadRows, WriteRejected, counter_name
from ctrflow.beam_jobs.options import ScoreOptions, job_parser, parse_job_options
from ctrflow.beam_jobs.outputs import bigquery_scores as bq_out
from ctrflow.beam_jobs.outputs import date_partitions as partition
from ctrflow.beam_jobs.outputs import manifest as mf
from ctrflow.beam_jobs.outputs.bigquery_scores import bigquery_partition
from ctrflow.beam_jobs.outputs.profiles import ProfileBatches, empty_profile
from ctrflow.beam_jobs.outputs.score_tables import WriteScores
from ctrflow.beam_jobs.runners import is_direct_runner, new_pipeline, with_local_parallelism
from ctrflow.beam_jobs.scoring import prediction_drift as score_drift
from ctrflow.beam_jobs.scoring.duplicate_ids import CountDuplicateIds
from ctrflow.beam_jobs.scoring.model_handler import ServingModelHandler, preload
from ctrflow.common.errors import OptionsError, UserError
from ctrflow.common.flags import FlagParser
from ctrflow.common.logs import setup_logging
from ctrflow.model.artifact import ModelMetadata, load_metadata
from ctrflow.pipeline import stats
from ctrflow.pipeline.drift import drift_report
from ctrflow.pipeline.drift_html import write_drift_html
from ctrflow.pipeline.parsing import LOCATOR_FIELDS, BatchParser

SPLIT = "score"
MIN_RANGE_BYTES, MAX_RANGE_BYTES = 4 << 20, 16 << 20  # read-task size bounds (``_range_bytes``)


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


def _norm(path: str) -> str:
    return path.rstrip("/") if "://" in path else os.path.abspath(path)


def _inside(path: str, folder: str) -> bool:
    if not folder:
        return False
    p, f = _norm(path) + "/", _norm(folder) + "/"
    return p.startswith(f)


def _component_regex(part: str) -> str:
    """One path component of a glob (``*``, ``?``, ``[...]``, ``{date}``) as a regex that stays inside it."""
    out, i = [], 0
    while i < len(part):
        ch = part[i]
        if ch == "*":
            out.append("[^/]*")
        elif ch == "?":
            out.append("[^/]")
        elif ch == "[" and "]" in part[i + 1:]:
            j = part.index("]", i + 1)
            out.append("[" + part[i + 1:j].replace("!", "^", 1) + "]")
            i = j
        elif ch == "{" and "}" in part[i:]:  # {date} and other placeholders: any text within the component
            out.append("[^/]*")
            i = part.index("}", i)
        else:
            out.append(re.escape(ch))
        i += 1
    return "".join(out)


def pattern_can_match_inside(pattern: str, folder: str) -> bool:
    """Whether some file under ``folder`` could match the input ``pattern`` (``**`` crosses folders)."""
    pat = _norm(pattern).split("/")
    parts = _norm(folder).split("/")
    for i, component in enumerate(parts):
        if i >= len(pat):
            return False
        if "**" in pat[i]:
            return True
        if not re.fullmatch(_component_regex(pat[i]), component):
            return False
    return True  # the pattern continues below the folder, or matches the folder itself


def check_output_location(output: str, inputs: list[str], model_dir: str) -> None:
    """Refuses outputs that the input patterns could read back, that hold the inputs, or that overlap the model.

    The test is what each pattern can match, not the input's folder: scores
    beside a single input file, or in a sibling folder of ``day/*.csv``, are fine.
    """
    for pattern in (p for p in inputs if not is_bigquery(p)):
        base = _base_dir(pattern)
        if base not in ("", ".") and _inside(base, output):
            raise OptionsError(f"--output {output} contains the input location {base}: refusing")
        if pattern_can_match_inside(pattern, output):
            raise OptionsError(f"--output {output} is inside the input location: --input {pattern} could match "
                             "files written there; refusing (scores would be mixed into the input)")
    if _inside(output, model_dir) or _inside(model_dir, output):
        raise OptionsError(f"--output {output} overlaps the model directory {model_dir}: refusing")


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


def build_pipeline(p: beam.Pipeline, meta: ModelMetadata, tasks, parser: BatchParser, staging: str, date: str,
                   options: ScoreOptions) -> None:
    schema = meta.schema
    read = p | "Read" >> ReadRows(schema, tasks, SPLIT, with_label=False, keys=True, extra=parser.extra,
                                  batch_rows=options.batch_rows, locator=parser.locator)
    _ = read[REJECTED] | "Rejected" >> WriteRejected(os.path.join(staging, "rejected"))
    handler = ServingModelHandler(meta.path, inference_batch_size=options.inference_batch_size,
                                  intra_op_threads=options.model_threads)
    results = read.rows | "Score" >> RunInference(handler).with_output_types(PredictionResult)
    out_schema = output_arrow_schema(parser)
    _ = (results
         | "ToTable" >> beam.ParDo(_ToOutputTable(out_schema, meta.version, date)).with_output_types(pa.Table)
         | "Write" >> WriteScores(out_schema, staging, "parquet" if options.output_table else options.output_format))
    score_drift.profile_scores(results, meta, staging)
    baseline = stats.Profile.from_dict(meta.train_stats["train"]) if meta.train_stats else stats.Profile()
    id_names = [f.name for f in meta.layout.sparse if not f.wide_only]
    _ = (results
         | "Profile" >> ProfileBatches(schema, lambda r: (r.example, {n: r.inference[n] for n in id_names
                                                                      if n in r.inference}), baseline.ranges,
                                       default=False)  # a day without rows: written by _write_empty_profiles
         | "WriteProfile" >> beam.Map(lambda prof: mf.write_json(os.path.join(staging, "profile.json"),
                                                                 prof.to_dict())))
    ids = tuple(c.name for c in schema.columns if c.role == "id")
    if ids:  # duplicated ids are scored (they are input rows) and counted for the manifest
        _ = (read.rows
             | "DuplicateIds" >> CountDuplicateIds(ids)
             | "CountDuplicates" >> beam.Map(_count_duplicates))


def _count_duplicates(n: int) -> None:
    Metrics.counter(COUNTER_NAMESPACE, counter_name(SPLIT, "duplicate_id_rows")).inc(n)


def _range_bytes(patterns: list[str]) -> int:
    """Read-task size: a day in at least 16 tasks of at most 16 MB, so parallel workers end it together.

    A worker scores its last task alone while the others are done, and holds
    a task's bytes and batches in memory. Against at least 8 tasks of at most
    64 MB (3 interleaved runs each, 2 worker threads): 1M rows 7.19 against
    7.64 s, peak RSS 1.46 against 1.58 GB; 5M rows 18.9-19.2 against 19.4-19.5 s,
    1.50 against 1.76 GB. Tasks of 32 MB at 5M, or 32 tasks at 1M, gained nothing.
    """
    files = [p for p in patterns if not is_bigquery(p)]
    total = sum(size for _, size in match_files(files)) if files else 0
    return int(min(MAX_RANGE_BYTES, max(MIN_RANGE_BYTES, total // 16)))


def score_date(options: ScoreOptions, meta: ModelMetadata, date: str, startup: dict | None = None) -> dict:
    """Scores one date into a staging folder, then publishes it; returns the manifest.

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
    staging = partition.staging_dir(output, date)  # this run's version folder, live once published
    final = partition.partition_dir(output, date)
    logging.info("[%s] scoring %d files (%d read tasks) with model %s", date, len(files), len(tasks), meta.version)
    watch.lap("plan")
    try:
        began = time.time()
        with new_pipeline(options.beam_args) as p:
            build_pipeline(p, meta, tasks, parser, staging, date, options)
        watch.lap("pipeline")
        parts = mf.pipeline_parts(p.result, SPLIT, began, time.time())
        found = mf.counters(p.result)
        counts = mf.split_counts(found, SPLIT, "output_rows")
        counts = {"input_rows": counts["input_rows"], "scored_rows": counts["output_rows"],
                  "rejected_rows": counts["rejected_rows"]}
        duplicates = found.get(counter_name(SPLIT, "duplicate_id_rows"), 0) if has_id(meta.schema) else None
        _write_empty_profiles(meta, staging)
        drift = _write_drift(meta, staging, options.psi_threshold, date)
        watch.lap("drift_report")
        manifest = {
            "job": "score", "date": date, "model": meta.path, "model_version": meta.version,
            "inputs": patterns, "input_files": files, **counts, "duplicate_id_rows": duplicates,
            "row_locator": None if has_id(meta.schema) else list(LOCATOR_FIELDS),
            "drifted_features": drift["features_over_threshold"] if drift else [],
            "psi_threshold": options.psi_threshold,
            "output": staging, "partition": final, "version": os.path.basename(staging),
            "output_format": "bigquery" if options.output_table else options.output_format,
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
        if options.output_table:  # only now, after the checks: the table's partition is replaced in one copy job
            manifest["bigquery"] = bq_out.replace_partition(
                options.output_table, date, partition_files(staging), output_arrow_schema(parser),
                run_id=os.path.basename(staging))
            mf.write_json(os.path.join(staging, "manifest.json"), manifest)
        partition.publish(staging)
    except BaseException:
        partition.discard(staging)
        raise
    logging.info("[%s] %d rows in, %d scored, %d rejected -> %s", date, counts["input_rows"],
                 counts["scored_rows"], counts["rejected_rows"], final)
    _print_summary(manifest, drift, options.psi_threshold)
    return manifest


def partition_files(staging: str) -> list[str]:
    """The score files of a run's folder (what a BigQuery load takes)."""
    return sorted(m.path for m in FileSystems.match([os.path.join(staging, "part-*.parquet")])[0].metadata_list)


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


def _write_empty_profiles(meta: ModelMetadata, staging: str) -> None:
    """A day without rows: the profiles of no rows, which the pipeline's combines (without Beam's default
    value: three Beam stages less, about 0.15 s of every run) did not write."""
    path = os.path.join(staging, "profile.json")
    if not FileSystems.exists(path):
        mf.write_json(path, empty_profile().to_dict())
    score_drift.write_empty_if_missing(meta, staging)


def _write_drift(meta: ModelMetadata, staging: str, threshold: float, date: str) -> dict | None:
    path = os.path.join(staging, "profile.json")
    if not meta.train_stats or not FileSystems.exists(path):
        return None
    day = stats.Profile.from_dict(mf.read_json(path))
    report = drift_report(meta.schema, meta.layout, stats.Profile.from_dict(meta.train_stats["train"]), day,
                          threshold)
    report["prediction"] = score_drift.prediction_section(meta, staging)  # score PSI vs the model's eval scores
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
