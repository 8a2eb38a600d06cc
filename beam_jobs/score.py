"""The batch scoring job: one daily table in, scores keyed by id out, with a drift report.

For each date (``--date 2026-11-21`` or a range ``2026-11-01:2026-11-07``) it
reads the rows matching ``--input`` (``{date}`` is replaced), validates them
with the schema that travelled with the model, scores them with the exported
SavedModel inside Beam (RunInference, model loaded once per worker) and
publishes ``OUTPUT/date=YYYY-MM-DD/`` atomically::

    part-*.parquet     id/passthrough columns, score, model_version, scoring_date
    rejected-*.jsonl   rows that could not be scored, with the reason
    profile.json       the day's feature profile
    drift.json         the day against the training baseline (PSI, OOV, missing, range)
    manifest.json      input_rows, scored_rows, rejected_rows, model, inputs, durations

Re-running a date replaces exactly that date's partition.
"""
from __future__ import annotations

import argparse
import datetime
import logging
import os

import apache_beam as beam
import numpy as np
import pyarrow as pa
from apache_beam.io.filesystems import FileSystems
from apache_beam.metrics import Metrics
from apache_beam.ml.inference.base import RunInference

from beam_jobs import manifest as mf
from beam_jobs import partition
from beam_jobs.io import COUNTER_NAMESPACE, REJECTED, ReadRows, WriteRejected, counter_name
from beam_jobs.model_handler import ServingModelHandler
from beam_jobs.options import add_common_args, beam_help_epilog, pipeline_options, setup_logging
from beam_jobs.profiles import MergeProfiles
from beam_jobs.sources import plan_reads
from model.export import ModelMetadata, load_metadata
from pipeline import stats
from pipeline.drift import DEFAULT_PSI_THRESHOLD, drift_report
from pipeline.parsing import BatchParser

SPLIT = "score"


class DriftError(RuntimeError):
    """Features drifted over the threshold and --fail-on-drift was given."""


def build_arg_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="ctrflow score",
        description="Score one daily table (or a range of dates) with a model exported by `ctrflow train`; "
                    "write scores keyed by id per date partition, rejected rows, a manifest and a drift report.",
        epilog=beam_help_epilog())
    p.add_argument("--model", required=True, help="MODEL_DIR of `ctrflow train` (or its export/ folder)")
    p.add_argument("--input", required=True, action="append",
                   help="input file pattern; '{date}' is replaced by each date (repeatable)")
    p.add_argument("--date", required=True,
                   help="scoring date YYYY-MM-DD, or a range FIRST:LAST (one partition per date)")
    p.add_argument("--output", required=True, help="output folder; each date goes to OUTPUT/date=YYYY-MM-DD/")
    p.add_argument("--passthrough", default="",
                   help="comma-separated extra input columns to copy into the output (the schema's id and "
                        "passthrough columns are always copied)")
    p.add_argument("--psi-threshold", type=float, default=DEFAULT_PSI_THRESHOLD,
                   help="features with PSI above this are reported as drifted (default: %(default)s)")
    p.add_argument("--fail-on-drift", action="store_true",
                   help="exit non-zero when any feature drifts over the threshold (after writing the output)")
    add_common_args(p)
    return p


def parse_dates(spec: str) -> list[str]:
    """'2026-11-21' or '2026-11-01:2026-11-07' -> ISO dates."""
    try:
        parts = [datetime.date.fromisoformat(s.strip()) for s in spec.split(":")]
    except ValueError as e:
        raise ValueError(f"--date {spec!r}: expected YYYY-MM-DD or FIRST:LAST ({e})") from None
    if len(parts) == 1:
        return [parts[0].isoformat()]
    if len(parts) != 2 or parts[1] < parts[0]:
        raise ValueError(f"--date {spec!r}: a range is FIRST:LAST with FIRST <= LAST")
    return [(parts[0] + datetime.timedelta(days=i)).isoformat() for i in range((parts[1] - parts[0]).days + 1)]


def _base_dir(pattern: str) -> str:
    """The folder part of a pattern before any wildcard or placeholder."""
    cut = min([i for i in (pattern.find(ch) for ch in "*?[{") if i >= 0], default=len(pattern))
    head = pattern[:cut]
    return head if head.endswith("/") else os.path.dirname(head)


def _inside(path: str, folder: str) -> bool:
    if not folder:
        return False
    norm = (lambda p: p if "://" in p else os.path.abspath(p))
    p, f = norm(path).rstrip("/") + "/", norm(folder).rstrip("/") + "/"
    return p.startswith(f)


def check_output_location(output: str, inputs: list[str], model_dir: str) -> None:
    """Refuses outputs that could overwrite or be mixed into inputs or the model."""
    for pattern in inputs:
        base = _base_dir(pattern)
        if _inside(output, base) and base not in ("", "."):
            raise ValueError(f"--output {output} is inside the input location {base}: refusing (scores would "
                             "be mixed into the input)")
        if _inside(base, output):
            raise ValueError(f"--output {output} contains the input location {base}: refusing")
    if _inside(output, model_dir) or _inside(model_dir, output):
        raise ValueError(f"--output {output} overlaps the model directory {model_dir}: refusing")


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
        cols += [pa.array(result.inference["score"].astype(np.float32)),
                 pa.array([self.version] * n, pa.string()),
                 pa.array([self.date] * n, pa.date32())]
        self.rows.inc(n)
        yield pa.Table.from_arrays(cols, schema=self.schema)


def _day_profile(result, schema, id_names: list[str], ranges) -> stats.Profile:
    raw = stats.profile_raw(result.example, schema, ranges)
    return raw.merge(stats.profile_ids({n: result.inference[n] for n in id_names if n in result.inference}))


def build_pipeline(p: beam.Pipeline, meta: ModelMetadata, tasks, parser: BatchParser, staging: str, date: str,
                   batch_rows: int) -> None:
    schema = meta.schema
    read = p | "Read" >> ReadRows(schema, tasks, SPLIT, with_label=False, keys=True, extra=parser.extra,
                                  batch_rows=batch_rows)
    _ = read[REJECTED] | "Rejected" >> WriteRejected(os.path.join(staging, "rejected"))
    results = read.rows | "Score" >> RunInference(ServingModelHandler(meta.path))
    out_schema = output_arrow_schema(parser)
    _ = (results
         | "ToTable" >> beam.ParDo(_ToOutputTable(out_schema, meta.version, date))
         | "WriteParquet" >> beam.io.WriteToParquetBatched(os.path.join(staging, "part"), schema=out_schema,
                                                           file_name_suffix=".parquet"))
    baseline = stats.Profile.from_dict(meta.train_stats["train"]) if meta.train_stats else stats.Profile()
    id_names = [f.name for f in meta.layout.sparse if not f.wide_only]
    _ = (results
         | "Profile" >> beam.Map(_day_profile, schema, id_names, baseline.ranges)
         | "MergeProfiles" >> beam.CombineGlobally(MergeProfiles())
         | "WriteProfile" >> beam.Map(lambda prof: mf.write_json(os.path.join(staging, "profile.json"),
                                                                 prof.to_dict())))


def score_date(args, beam_args: list[str], meta: ModelMetadata, date: str) -> dict:
    """Scores one date into a staging folder, then publishes it; returns the manifest."""
    watch = mf.Stopwatch()
    patterns = [pattern.replace("{date}", date) for pattern in args.input]
    extra = tuple(c for c in args.passthrough.split(",") if c)
    parser = BatchParser(meta.schema, with_label=False, keys=True, extra=extra)
    tasks, files = plan_reads(meta.schema, patterns, parser.required_columns)
    output = args.output.rstrip("/")
    staging = partition.staging_dir(output, date)
    final = partition.partition_dir(output, date)
    logging.info("[%s] scoring %d files (%d read tasks) with model %s", date, len(files), len(tasks), meta.version)
    try:
        with beam.Pipeline(options=pipeline_options(beam_args)) as p:
            build_pipeline(p, meta, tasks, parser, staging, date, args.batch_rows)
        watch.lap("pipeline")
        counts = mf.split_counts(mf.counters(p.result), SPLIT, "output_rows")
        counts = {"input_rows": counts["input_rows"], "scored_rows": counts["output_rows"],
                  "rejected_rows": counts["rejected_rows"]}
        drift = _write_drift(meta, staging, args.psi_threshold)
        manifest = {
            "job": "score", "date": date, "model": meta.path, "model_version": meta.version,
            "inputs": patterns, "input_files": files, **counts,
            "drifted_features": drift["features_over_threshold"] if drift else [],
            "output": final, "durations_s": {**watch.stages, "total": watch.total()},
            "versions": mf.library_versions(), "beam_options": beam_args,
        }
        mf.write_json(os.path.join(staging, "manifest.json"), manifest)
        mf.check_counts(counts, date, "scored_rows", args.max_rejected_fraction,
                        os.path.join(staging, "rejected-*.jsonl"))
    except BaseException:
        partition.discard(staging)
        raise
    partition.publish(staging, final)
    logging.info("[%s] %d rows in, %d scored, %d rejected -> %s", date, counts["input_rows"],
                 counts["scored_rows"], counts["rejected_rows"], final)
    if drift and drift["features_over_threshold"]:
        logging.warning("[%s] drift over PSI %.2f: %s", date, args.psi_threshold,
                        ", ".join(f"{n} ({drift['features'][n]['psi']:.3f})" for n in drift["features_over_threshold"]))
    return manifest


def _write_drift(meta: ModelMetadata, staging: str, threshold: float) -> dict | None:
    path = os.path.join(staging, "profile.json")
    if not meta.train_stats or not FileSystems.exists(path):
        return None
    day = stats.Profile.from_dict(mf.read_json(path))
    report = drift_report(meta.schema, meta.layout, stats.Profile.from_dict(meta.train_stats["train"]), day,
                          threshold)
    mf.write_json(os.path.join(staging, "drift.json"), report)
    return report


def run(argv: list[str] | None = None) -> list[dict]:
    """Scores every requested date; returns their manifests."""
    args, beam_args = build_arg_parser().parse_known_args(argv)
    setup_logging()
    meta = load_metadata(args.model)
    check_output_location(args.output, args.input, os.path.dirname(meta.path.rstrip("/")))
    manifests = [score_date(args, beam_args, meta, d) for d in parse_dates(args.date)]
    drifted = {m["date"]: m["drifted_features"] for m in manifests if m["drifted_features"]}
    if args.fail_on_drift and drifted:
        raise DriftError(f"drift over PSI {args.psi_threshold}: {drifted}")
    return manifests


if __name__ == "__main__":
    run()
