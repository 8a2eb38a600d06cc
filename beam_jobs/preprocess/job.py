"""The preprocess job: analyze training data, transform train/eval, write TFRecords.

Each run writes a new version folder ``--output/v=<run id>/`` and publishes it
last (``_SUCCESS``, then ``--output/_LATEST``; see ``beam_jobs.outputs.publish``), so a
failed rerun leaves the previous output as it was. A version folder holds::

    train/part-*.tfrecord.gz     transformed training examples (gzip TFRecord)
    eval/part-*.tfrecord.gz      transformed eval examples (same transform graph)
    valid/part-*.tfrecord.gz     with --valid: transformed validation examples (same graph, not analyzed)
    transform_fn/, transformed_metadata/   the TFT transform graph
    layout.json                  the model-facing feature layout (pipeline.layout)
    stats.json                   per-feature training profile (the drift baseline)
    schema.yaml                  a copy of the schema used
    rejected/{train,valid,eval}-*.jsonl rows that could not be used, with reasons
    row_counts.json              rows read, written, rejected per split, counted as data (outputs.row_counts)
    manifest.json                counts per split, inputs, versions, durations (+ base, vocabulary_growth,
                                 analysis_cache with the daily-loop flags, see beam_jobs.preprocess.daily)
    analysis.json                bucket boundaries / scaling fixed up front (--base, --analysis-cache)
    _SUCCESS                     the list of files, written last (then _LATEST names this version)

Readers (``ctrflow train/evaluate --data OUTPUT``, ``--base OUTPUT``) follow
``_LATEST`` (``pipeline.artifacts.PreprocessArtifacts.live``).

Analyzers see training rows only; eval rows are transformed with the graph
learned on train.
"""
from __future__ import annotations

import functools
import logging
import os
import tempfile
import time

import apache_beam as beam
import pyarrow as pa
import tensorflow_transform as tft
import tensorflow_transform.beam as tft_beam
from apache_beam.io.filesystems import FileSystems
from apache_beam.metrics import Metrics

from ctrflow.beam_jobs.input.plan import ReadTask, plan_reads
from ctrflow.beam_jobs.input.transforms import (
    COUNTER_NAMESPACE,
    COUNTS,
    REJECTED,
    ReadRows,
    WriteRejected,
    counter_name,
)
from ctrflow.beam_jobs.options import PreprocessOptions, job_parser, parse_dates, parse_job_options
from ctrflow.beam_jobs.outputs import manifest as mf
from ctrflow.beam_jobs.outputs import publish
from ctrflow.beam_jobs.outputs.profiles import ProfileBatches
from ctrflow.beam_jobs.outputs.row_counts import WriteRowCounts, count_of, read_row_counts
from ctrflow.beam_jobs.outputs.tfrecord_writer import WriteTFRecordBatches
from ctrflow.beam_jobs.preprocess import daily
from ctrflow.beam_jobs.preprocess.splits import HashSplit, split_columns
from ctrflow.beam_jobs.runners import new_pipeline
from ctrflow.common import compat
from ctrflow.common.flags import FlagParser
from ctrflow.common.logs import quiet_tf1_notices, setup_logging
from ctrflow.pipeline import artifacts as af
from ctrflow.pipeline import stats
from ctrflow.pipeline.artifacts import PreprocessArtifacts
from ctrflow.pipeline.parsing import BatchParser
from ctrflow.pipeline.prior import AnalysisPrior, write_analysis
from ctrflow.pipeline.transform import build_layout, make_preprocessing_fn, tensor_adapter_config, to_tft_batch
from ctrflow.schemas import load_schema
from ctrflow.schemas.types import Schema

SPLITS = ("train", "valid", "eval")


def build_arg_parser() -> FlagParser:
    return job_parser(PreprocessOptions, "ctrflow preprocess",
                      "Analyze the training data (bucket boundaries, vocabularies) with tf.Transform, transform "
                      "train and eval, and write gzip TFRecords, the transform graph and a manifest.")


class _CountRows(beam.DoFn):
    """Transformed (RecordBatch, _) -> RecordBatch, counted as output rows."""

    def __init__(self, split: str):
        self.rows = Metrics.counter(COUNTER_NAMESPACE, counter_name(split, "output_rows"))

    def process(self, element):
        batch, _ = element
        self.rows.inc(batch.num_rows)
        yield batch


def _num_rows(batch: pa.RecordBatch) -> int:
    return batch.num_rows


def _train_profile(raw_batches, transformed, schema: Schema, id_names: list[str]):
    # one combine per branch, so each is lifted into its producing stage: combining a Flatten of the two
    # made the runner hold every raw batch (slower, and memory grew with the input)
    raw = raw_batches | "ProfileRaw" >> ProfileBatches(schema, lambda b: (b, None))
    ids = transformed | "ProfileIds" >> ProfileBatches(
        schema, lambda t: (None, stats.transformed_ids(t[0], id_names)))
    return ((raw, ids) | "BothProfiles" >> beam.Flatten()
            | "Profile" >> beam.CombineGlobally(lambda profiles: functools.reduce(stats.Profile.merge, profiles,
                                                                                  stats.Profile())))


def _id_feature_names(schema: Schema) -> list[str]:
    names = [c.name for c in schema.numeric if c.numeric.bucketize is not None]
    names += [c.name for c in schema.categorical]
    return names


def build_pipeline(p: beam.Pipeline, schema: Schema, tasks: dict[str, list], output: str,
                   options: PreprocessOptions, prior: AnalysisPrior | None = None, analyze_rows: bool = True) -> None:
    """Wires read -> analyze/transform -> write for every split given (train, valid, eval) into ``p``.

    ``analyze_rows=False``: the analysis is all in ``prior`` (per-day cache), so no row is analyzed.
    """
    artifacts = PreprocessArtifacts(output)
    adapter = tensor_adapter_config(schema)
    preprocessing_fn = make_preprocessing_fn(schema, prior)
    clean, counts = {}, []
    for split in SPLITS:
        if not tasks.get(split):  # a split the run has no input for
            continue
        read = p | f"Read{split.title()}" >> ReadRows(schema, tasks[split], split, with_label=True, keys=False,
                                                       extra=options.split_columns, batch_rows=options.batch_rows,
                                                       prefetch=True)
        clean[split] = read.rows
        counts.append(read[COUNTS])
        _ = read[REJECTED] | f"Rejected{split.title()}" >> WriteRejected(artifacts.rejected_prefix(split))
    if options.eval_fraction:  # analyzers below see the kept training rows only
        by_hash = HashSplit(split_columns(schema, options.split_key), options.eval_fraction)
        clean["train"], clean["eval"] = clean["train"] | "HashSplit" >> by_hash
        counts.append(clean["eval"] | "CountMoved" >> beam.Map(
            lambda b: {counter_name("eval", "input_rows"): b.num_rows,
                       counter_name("train", "split_out_rows"): b.num_rows}))
    analyzed = clean["train"] if analyze_rows else p | "NothingToAnalyze" >> beam.Create([])
    transform_fn = (
        (analyzed | "ToTftAnalyze" >> beam.Map(to_tft_batch, adapter).with_output_types(pa.RecordBatch), adapter)
        | "Analyze" >> tft_beam.AnalyzeDataset(preprocessing_fn))
    # The transform pass reads the training input again instead of letting the runner hold every clean
    # batch until the analysis ends: parsing again is cheaper than buffering, and memory stays flat (on
    # Criteo-size inputs it was faster too). Its counters go to "train_again", unreported.
    # With --eval-fraction the split's counters must see each row once, and a bigquery:// query would run
    # (and be billed) twice and could change in between, so in those cases the batches are reused.
    to_transform = dict(clean)
    if analyze_rows and not options.eval_fraction and all(isinstance(t, ReadTask) for t in tasks["train"]):
        to_transform["train"] = (p | "ReadTrainAgain" >> ReadRows(
            schema, tasks["train"], "train_again", with_label=True, keys=False, batch_rows=options.batch_rows,
            prefetch=True)).rows
    outputs = {}
    for split, batches in to_transform.items():
        tft_batches = batches | f"ToTft{split.title()}" >> beam.Map(to_tft_batch, adapter).with_output_types(
            pa.RecordBatch)
        outputs[split], _ = (((tft_batches, adapter), transform_fn)
                             | f"Transform{split.title()}" >> tft_beam.TransformDataset(output_record_batches=True))
    train_out = outputs["train"]
    _ = transform_fn | "WriteTransformFn" >> tft_beam.WriteTransformFn(output)
    ragged = tuple(c.name for c in schema.categorical if c.categorical.multivalent_delimiter)
    for split, out in outputs.items():
        written = out | f"Count{split.title()}" >> beam.ParDo(_CountRows(split)).with_output_types(pa.RecordBatch)
        _ = written | f"Write{split.title()}" >> WriteTFRecordBatches(artifacts.split_prefix(split),
                                                                      num_shards=options.num_shards, ragged=ragged)
        counts.append(written | f"Counted{split.title()}" >> count_of(counter_name(split, "output_rows"),
                                                                      _num_rows))
    _ = tuple(counts) | "RowCounts" >> WriteRowCounts(output)
    profile = _train_profile(clean["train"], train_out, schema, _id_feature_names(schema))
    _ = (profile
         | "ProfileJson" >> beam.Map(lambda prof: stats_json(prof))
         | "WriteStats" >> beam.Map(lambda doc: artifacts.write_stats(doc)))


def stats_json(profile: stats.Profile) -> dict:
    return {"train": profile.to_dict()}


def _check_output(output: str) -> None:
    """Refuses to publish into a folder that is not a ctrflow preprocess output. Deletes nothing."""
    if FileSystems.exists(output):
        previous = [os.path.join(output, n) for n in (af.LATEST, af.MANIFEST, af.TRANSFORM_FN, af.LAYOUT)]
        listing = FileSystems.match([os.path.join(output, "*")])[0].metadata_list
        if listing and not any(FileSystems.exists(x) for x in previous):
            raise FileExistsError(f"--output {output} exists and is not a ctrflow preprocess output; "
                                  "refusing to write into it")


def run(argv: list[str] | None = None) -> dict:
    """Parses the flags and runs the job; returns the manifest."""
    return run_job(parse_job_options(PreprocessOptions, build_arg_parser(), argv))


def run_job(options: PreprocessOptions) -> dict:
    """Runs the job; returns the manifest (also written to OUTPUT/manifest.json)."""
    setup_logging()
    watch = mf.Stopwatch()
    schema = load_schema(options.schema)
    dates = parse_dates(options.dates) if options.dates else None
    train_patterns, train_by_date = daily.expand_dates(list(options.train), dates)
    root = options.output.rstrip("/")
    parser = BatchParser(schema, with_label=True, keys=False, extra=options.split_columns)
    tasks, files = {}, {}
    for split, patterns in (("train", train_patterns), ("valid", options.valid), ("eval", options.eval)):
        tasks[split], files[split] = (plan_reads(schema, patterns, parser.required_columns, parser=parser)
                                      if patterns else ([], []))
        if patterns:
            logging.info("[%s] %d files, %d read tasks", split, len(files[split]), len(tasks[split]))
    watch.lap("plan")
    base = af.live_dir(options.base) if options.base else None  # the published version of --base
    prior = daily.base_prior(base, schema, options.refit_buckets) if base else None
    cache_info = None
    if options.analysis_cache:
        with FileSystems.open(options.schema) as f:
            schema_text = f.read().decode()
        cached, cache_info = daily.run_cache(
            options, schema, schema_text, list(options.train), dates,
            lambda d: plan_reads(schema, train_by_date[d], parser.required_columns, parser=parser)[0])
        prior = daily.combine(prior, cached)
        watch.lap("analyze_new_days")
    _check_output(root)
    output = publish.new_version_dir(root)  # readers keep the live version until this one is published
    try:
        manifest = _run_version(options, schema, tasks, files, root, output, watch, prior, cache_info, dates)
    except mf.RejectedFractionError:
        publish.release(output)  # kept for inspection: removed as abandoned a day later (publish.py)
        logging.error("preprocess failed; its rows and rejected rows are kept, unpublished, in %s (the live "
                      "version of %s is unchanged)", output, root)
        raise
    except BaseException:
        publish.discard(output)
        raise
    logging.info("preprocess done in %.1fs; outputs in %s (published as the live version of %s)", watch.total(),
                 output, root)
    return manifest


def transform_context(temp_dir: str, tf1: bool = True) -> tft_beam.Context:
    """tf.Transform's context for the job: TF1 graph mode unless ``tf1=False``, temporary files under ``temp_dir``.

    tf.Transform's default TF2 mode traces the preprocessing_fn into a
    ``tf.function``, optimizes and saves it as a SavedModel between the two
    passes and loads it again; its TF1 mode builds one graph and runs it in a
    session. The same TFRecords byte for byte on Criteo (200k rows), the same
    vocabularies, transformed schema and layout; a z-score may differ in its
    last bit (``tests/test_transform_graph_format.py``). The serving export
    wraps whichever graph the data was written with, so training and serving
    agree. The TF1 mode is faster, most of all at the pipeline's start (no
    tf.function to trace, save and reload). The preprocessing_fn is ctrflow's own
    (built from the schema), so no user code depends on TF2 behaviour inside
    it. What differs for a user is the ``transform_fn/`` artifact: a TF1
    SavedModel, which ``TFTransformOutput.transform_features_layer()`` applies
    eagerly, in Keras and in ``tf.data``, but ``transform_raw_features()`` only
    in graph mode (tf.Transform's rule for TF1 graphs); ``--tf2-transform-graph``
    keeps tf.Transform's default.
    """
    if tf1:
        quiet_tf1_notices()
    return tft_beam.Context(temp_dir=temp_dir, force_tf_compat_v1=tf1)


def _run_version(options: PreprocessOptions, schema: Schema, tasks: dict, files: dict, root: str, output: str,
                 watch: mf.Stopwatch, prior, cache_info, dates) -> dict:
    """Runs the pipeline into the version folder ``output``, checks the counts, publishes it."""
    temp = os.path.join(output, "tmp") if "://" in output else tempfile.mkdtemp(prefix="ctrflow-tft-")
    logging.info("running the preprocess pipeline (read, analyze, transform, write) into %s ...", output)
    began = time.time()
    with new_pipeline(options.beam_args) as p, transform_context(temp, tf1=not options.tf2_transform_graph):
        build_pipeline(p, schema, tasks, output, options, prior, analyze_rows=cache_info is None)
    watch.lap("pipeline")
    parts = mf.pipeline_parts(p.result, [*SPLITS, "train_again"], began, time.time())
    if "://" in output:
        publish.delete_folder(temp)

    found = read_row_counts(output)
    splits = {}
    for split in SPLITS:
        if tasks[split]:
            counts = mf.split_counts(found, split, "output_rows")
            splits[split] = {**counts, "input_files": files[split]}
    if options.eval_fraction:
        splits["eval"] = {**mf.split_counts(found, "eval", "output_rows"), "input_files": files["train"],
                          "hash_split": {"of": "train", "key": options.split_key or "row",
                                         "columns": list(split_columns(schema, options.split_key)),
                                         "eval_fraction": options.eval_fraction}}
    tft_output = tft.TFTransformOutput(output)
    artifacts = PreprocessArtifacts(output)
    artifacts.write_layout(build_layout(schema, tft_output.vocabulary_size_by_name).to_json())
    artifacts.write_schema(af.read_text(options.schema))
    write_analysis(output, prior)
    watch.lap("finalize")
    daily_info = {"dates": dates, "analysis_cache": cache_info}
    if options.base:
        daily_info.update(base=options.base, refit_buckets=options.refit_buckets,
                          vocabulary_growth=daily.vocabulary_growth(output, prior))
    manifest = {
        "job": "preprocess",
        "schema": options.schema,
        "output": output,
        "root": root,
        "version": os.path.basename(output),
        "splits": splits,
        "durations_s": {"process_start": watch.process_start, **watch.stages, "pipeline_parts": parts,
                        "total": watch.total()},
        "versions": mf.library_versions(),
        "compat": compat.manifest(),  # which private-API paths ran (ctrflow.common.compat)
        "beam_options": list(options.beam_args),
        "options": options.to_dict(),
        **{k: v for k, v in daily_info.items() if v is not None},
    }
    artifacts.write_manifest(manifest)
    for split, counts in splits.items():
        mf.check_counts(counts, split, "output_rows", options.max_rejected_fraction,
                        artifacts.rejected_prefix(split) + "-*.jsonl")
    for split, counts in splits.items():
        logging.info("[%s] %d rows in, %d written, %d rejected", split, counts["input_rows"],
                     counts["output_rows"], counts["rejected_rows"])
    publish.publish(output)
    return manifest


if __name__ == "__main__":
    run()
