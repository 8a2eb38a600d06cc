"""The preprocess job: analyze training data, transform train/eval, write TFRecords.

Each run writes a new version folder ``--output/v=<run id>/`` and publishes it
last (``_SUCCESS``, then ``--output/_LATEST``; see ``beam_jobs.publish``), so a
failed rerun leaves the previous output as it was. A version folder holds::

    train/part-*.tfrecord.gz     transformed training examples (gzip TFRecord)
    eval/part-*.tfrecord.gz      transformed eval examples (same transform graph)
    transform_fn/, transformed_metadata/   the TFT transform graph
    layout.json                  the model-facing feature layout (pipeline.layout)
    stats.json                   per-feature training profile (the drift baseline)
    schema.yaml                  a copy of the schema used
    rejected/{train,eval}-*.jsonl rows that could not be used, with reasons
    manifest.json                counts per split, inputs, versions, durations
    _SUCCESS                     the list of files, written last (then _LATEST names this version)

Readers (``ctrflow train/evaluate --data OUTPUT``) follow ``_LATEST``
(``pipeline.artifacts.PreprocessArtifacts.live``).

Analyzers see training rows only; eval rows are transformed with the graph
learned on train.
"""
from __future__ import annotations

import argparse
import functools
import logging
import os
import tempfile

import apache_beam as beam
import tensorflow_transform as tft
import tensorflow_transform.beam as tft_beam
from apache_beam.io.filesystems import FileSystems
from apache_beam.metrics import Metrics

from ctrflow.beam_jobs import manifest as mf
from ctrflow.beam_jobs import publish
from ctrflow.beam_jobs.io import COUNTER_NAMESPACE, REJECTED, ReadRows, WriteRejected, counter_name
from ctrflow.beam_jobs.profiles import ProfileCombine
from ctrflow.beam_jobs.options import add_common_args, beam_help_epilog, pipeline_options, setup_logging
from ctrflow.beam_jobs.sources import ReadTask, plan_reads
from ctrflow.beam_jobs.tfrecords import WriteTFRecordBatches
from ctrflow.beam_jobs.splits import HashSplit
from ctrflow.pipeline import artifacts as af
from ctrflow.pipeline import stats
from ctrflow.pipeline.artifacts import PreprocessArtifacts
from ctrflow.pipeline.parsing import BatchParser
from ctrflow.pipeline.transform import build_layout, make_preprocessing_fn, tensor_adapter_config, to_tft_batch
from ctrflow.schemas import load_schema
from ctrflow.schemas.types import Schema

SPLITS = ("train", "eval")


def build_arg_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="ctrflow preprocess",
        description="Analyze the training data (bucket boundaries, vocabularies) with tf.Transform, transform "
                    "train and eval, and write gzip TFRecords, the transform graph and a manifest.",
        epilog=beam_help_epilog())
    p.add_argument("--schema", required=True, help="schema YAML file (see schemas/)")
    p.add_argument("--train", required=True, action="append",
                   help="training input (repeatable): a file pattern (local, glob or gs://; CSV/TSV, Parquet or "
                        "TFRecord of tf.Example) or bigquery://PROJECT.DATASET.TABLE or bigquery://SELECT ...")
    p.add_argument("--eval", action="append", default=[], help="eval input file pattern (repeatable)")
    p.add_argument("--eval-fraction", type=float, default=0.0,
                   help="instead of --eval: send this fraction of the --train rows to eval, chosen by a stable "
                        "hash of --split-key (the same rows in every run and on every runner)")
    p.add_argument("--split-key", help="column whose value decides a row's split with --eval-fraction, e.g. a "
                                       "user or request id (rows sharing a key stay together)")
    p.add_argument("--output", required=True, help="output directory (local or gs://)")
    p.add_argument("--num-shards", type=int, default=0,
                   help="TFRecord shards per split; 0 lets the runner choose (default)")
    add_common_args(p)
    return p


class _CountRows(beam.DoFn):
    """Transformed (RecordBatch, _) -> RecordBatch, counted as output rows."""

    def __init__(self, split: str):
        self.rows = Metrics.counter(COUNTER_NAMESPACE, counter_name(split, "output_rows"))

    def process(self, element):
        batch, _ = element
        self.rows.inc(batch.num_rows)
        yield batch


def _train_profile(raw_batches, transformed, schema: Schema, id_names: list[str]):
    # one combine per branch, so each is lifted into its producing stage: combining a Flatten of the two
    # made the runner hold every raw batch (1M Criteo rows: 74 s / 4.3 GB instead of 47 s / 1.7 GB)
    raw = (raw_batches
           | "ProfileRawInputs" >> beam.Map(lambda b: (b, None))
           | "ProfileRaw" >> beam.CombineGlobally(ProfileCombine(schema)))
    ids = (transformed
           | "ProfileIdInputs" >> beam.Map(lambda t: (None, stats.transformed_ids(t[0], id_names)))
           | "ProfileIds" >> beam.CombineGlobally(ProfileCombine(schema)))
    return ((raw, ids) | "BothProfiles" >> beam.Flatten()
            | "Profile" >> beam.CombineGlobally(lambda profiles: functools.reduce(stats.Profile.merge, profiles,
                                                                                  stats.Profile())))


def _id_feature_names(schema: Schema) -> list[str]:
    names = [c.name for c in schema.numeric if c.numeric.bucketize is not None]
    names += [c.name for c in schema.categorical]
    return names


def build_pipeline(p: beam.Pipeline, schema: Schema, tasks: dict[str, list], output: str, args) -> None:
    """Wires read -> analyze/transform -> write for both splits into ``p``."""
    artifacts = PreprocessArtifacts(output)
    adapter = tensor_adapter_config(schema)
    preprocessing_fn = make_preprocessing_fn(schema)
    clean = {}
    for split in SPLITS:
        if not tasks[split]:
            continue
        read = p | f"Read{split.title()}" >> ReadRows(schema, tasks[split], split, with_label=True, keys=False,
                                                       extra=_split_columns(args), batch_rows=args.batch_rows)
        clean[split] = read.rows
        _ = read[REJECTED] | f"Rejected{split.title()}" >> WriteRejected(artifacts.rejected_prefix(split))
    if args.eval_fraction:  # analyzers below see the kept training rows only
        clean["train"], clean["eval"] = clean["train"] | "HashSplit" >> HashSplit(args.split_key, args.eval_fraction)
    transform_fn = (
        (clean["train"] | "ToTftAnalyze" >> beam.Map(to_tft_batch, adapter), adapter)
        | "Analyze" >> tft_beam.AnalyzeDataset(preprocessing_fn))
    # The transform pass reads the training input again instead of letting the runner hold every clean
    # batch until the analysis ends: parsing again is cheaper than buffering, and memory stays flat (1M
    # Criteo rows: 48 s / 1.7 GB instead of 62 s / 4.3 GB). Its counters go to "train_again", unreported.
    # With --eval-fraction the split's counters must see each row once, and a bigquery:// query would run
    # (and be billed) twice and could change in between, so in those cases the batches are reused.
    to_transform = dict(clean)
    if not args.eval_fraction and all(isinstance(t, ReadTask) for t in tasks["train"]):
        to_transform["train"] = (p | "ReadTrainAgain" >> ReadRows(
            schema, tasks["train"], "train_again", with_label=True, keys=False, batch_rows=args.batch_rows)).rows
    outputs = {}
    for split, batches in to_transform.items():
        outputs[split], _ = (((batches | f"ToTft{split.title()}" >> beam.Map(to_tft_batch, adapter), adapter),
                              transform_fn)
                             | f"Transform{split.title()}" >> tft_beam.TransformDataset(output_record_batches=True))
    train_out = outputs["train"]
    _ = transform_fn | "WriteTransformFn" >> tft_beam.WriteTransformFn(output)
    ragged = tuple(c.name for c in schema.categorical if c.categorical.multivalent_delimiter)
    for split, out in outputs.items():
        _ = (out
             | f"Count{split.title()}" >> beam.ParDo(_CountRows(split))
             | f"Write{split.title()}" >> WriteTFRecordBatches(artifacts.split_prefix(split),
                                                               num_shards=args.num_shards, ragged=ragged))
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


def _split_columns(args) -> tuple[str, ...]:
    """The hash split's key travels with the clean rows."""
    return (args.split_key,) if args.eval_fraction else ()


def run(argv: list[str] | None = None) -> dict:
    """Runs the job; returns the manifest (also written to OUTPUT/manifest.json)."""
    args, beam_args = build_arg_parser().parse_known_args(argv)
    if args.eval_fraction and (args.eval or not args.split_key or not 0 < args.eval_fraction < 1):
        raise ValueError("--eval-fraction F (0 < F < 1) splits the --train input by --split-key COLUMN; "
                         "give --split-key, and no --eval")
    setup_logging()
    watch = mf.Stopwatch()
    schema = load_schema(args.schema)
    root = args.output.rstrip("/")
    parser = BatchParser(schema, with_label=True, keys=False, extra=_split_columns(args))
    tasks, files = {}, {}
    for split, patterns in (("train", args.train), ("eval", args.eval)):
        tasks[split], files[split] = (plan_reads(schema, patterns, parser.required_columns, parser=parser)
                                      if patterns else ([], []))
        logging.info("[%s] %d files, %d read tasks", split, len(files[split]), len(tasks[split]))
    watch.lap("plan")
    _check_output(root)
    output = publish.new_version_dir(root)  # readers keep the live version until this one is published
    try:
        manifest = _run_version(args, beam_args, schema, tasks, files, root, output, watch)
    except mf.RejectedFractionError:
        logging.error("preprocess failed; its rows and rejected rows are kept, unpublished, in %s (the live "
                      "version of %s is unchanged)", output, root)
        raise
    except BaseException:
        publish.discard(output)
        raise
    logging.info("preprocess done in %.1fs; outputs in %s (published as the live version of %s)", watch.total(),
                 output, root)
    return manifest


def _run_version(args, beam_args: list[str], schema: Schema, tasks: dict, files: dict, root: str, output: str,
                 watch: mf.Stopwatch) -> dict:
    """Runs the pipeline into the version folder ``output``, checks the counts, publishes it."""
    temp = os.path.join(output, "tmp") if "://" in output else tempfile.mkdtemp(prefix="ctrflow-tft-")
    options = pipeline_options(beam_args)
    logging.info("running the preprocess pipeline (read, analyze, transform, write) into %s ...", output)
    with beam.Pipeline(options=options) as p, tft_beam.Context(temp_dir=temp):
        build_pipeline(p, schema, tasks, output, args)
    result = p.result
    watch.lap("pipeline")
    if "://" in output and FileSystems.exists(temp):
        FileSystems.delete([temp])

    found = mf.counters(result)
    splits = {}
    for split in SPLITS:
        if tasks[split]:
            counts = mf.split_counts(found, split, "output_rows")
            splits[split] = {**counts, "input_files": files[split]}
    if args.eval_fraction:
        splits["eval"] = {**mf.split_counts(found, "eval", "output_rows"), "input_files": files["train"],
                          "hash_split": {"of": "train", "key": args.split_key, "eval_fraction": args.eval_fraction}}
    tft_output = tft.TFTransformOutput(output)
    artifacts = PreprocessArtifacts(output)
    artifacts.write_layout(build_layout(schema, tft_output.vocabulary_size_by_name).to_json())
    artifacts.write_schema(af.read_text(args.schema))
    watch.lap("finalize")
    manifest = {
        "job": "preprocess",
        "schema": args.schema,
        "output": output,
        "root": root,
        "version": os.path.basename(output),
        "splits": splits,
        "durations_s": {**watch.stages, "total": watch.total()},
        "versions": mf.library_versions(),
        "beam_options": beam_args,
    }
    artifacts.write_manifest(manifest)
    for split, counts in splits.items():
        mf.check_counts(counts, split, "output_rows", args.max_rejected_fraction,
                        artifacts.rejected_prefix(split) + "-*.jsonl")
    for split, counts in splits.items():
        logging.info("[%s] %d rows in, %d written, %d rejected", split, counts["input_rows"],
                     counts["output_rows"], counts["rejected_rows"])
    publish.publish(output)
    return manifest


if __name__ == "__main__":
    run()
