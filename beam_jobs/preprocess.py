"""The preprocess job: analyze training data, transform train/eval, write TFRecords.

Outputs under ``--output``::

    train/part-*.tfrecord.gz     transformed training examples (gzip TFRecord)
    eval/part-*.tfrecord.gz      transformed eval examples (same transform graph)
    transform_fn/, transformed_metadata/   the TFT transform graph
    layout.json                  the model-facing feature layout (pipeline.layout)
    stats.json                   per-feature training profile (the drift baseline)
    schema.yaml                  a copy of the schema used
    rejected/{train,eval}-*.jsonl rows that could not be used, with reasons
    manifest.json                counts per split, inputs, versions, durations

Analyzers see training rows only; eval rows are transformed with the graph
learned on train.
"""
from __future__ import annotations

import argparse
import logging
import os
import tempfile

import apache_beam as beam
import tensorflow_transform as tft
import tensorflow_transform.beam as tft_beam
from apache_beam.io.filesystems import FileSystems
from apache_beam.metrics import Metrics
from tfx_bsl.coders import example_coder

from beam_jobs import manifest as mf
from beam_jobs.io import COUNTER_NAMESPACE, REJECTED, ReadRows, WriteRejected, counter_name
from beam_jobs.profiles import MergeProfiles
from beam_jobs.options import add_common_args, beam_help_epilog, pipeline_options, setup_logging
from beam_jobs.sources import plan_reads
from pipeline import stats
from pipeline.parsing import BatchParser
from pipeline.transform import build_layout, make_preprocessing_fn, tensor_adapter_config, to_tft_batch
from schemas import load_schema
from schemas.types import Schema

SPLITS = ("train", "eval")


def build_arg_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="ctrflow preprocess",
        description="Analyze the training data (bucket boundaries, vocabularies) with tf.Transform, transform "
                    "train and eval, and write gzip TFRecords, the transform graph and a manifest.",
        epilog=beam_help_epilog())
    p.add_argument("--schema", required=True, help="schema YAML file (see schemas/)")
    p.add_argument("--train", required=True, action="append",
                   help="training input file pattern (repeatable; local, glob or gs://)")
    p.add_argument("--eval", action="append", default=[], help="eval input file pattern (repeatable)")
    p.add_argument("--output", required=True, help="output directory (local or gs://)")
    p.add_argument("--num-shards", type=int, default=0,
                   help="TFRecord shards per split; 0 lets the runner choose (default)")
    add_common_args(p)
    return p


class _ToExamples(beam.DoFn):
    """Transformed RecordBatches -> serialized tf.Examples, counted as output rows."""

    def __init__(self, split: str):
        self.rows = Metrics.counter(COUNTER_NAMESPACE, counter_name(split, "output_rows"))

    def process(self, element):
        batch, _ = element
        self.rows.inc(batch.num_rows)
        yield from example_coder.RecordBatchToExamples(batch)


def _train_profile(raw_batches, transformed, schema: Schema, id_names: list[str]):
    raw_p = raw_batches | "ProfileRaw" >> beam.Map(stats.profile_raw, schema)
    ids_p = transformed | "ProfileIds" >> beam.Map(lambda t: stats.profile_ids(stats.transformed_ids(t[0], id_names)))
    raw_total = raw_p | "MergeRaw" >> beam.CombineGlobally(MergeProfiles())
    ids_total = ids_p | "MergeIds" >> beam.CombineGlobally(MergeProfiles())
    return ((raw_total, ids_total) | "Both" >> beam.Flatten() | "MergeAll" >> beam.CombineGlobally(MergeProfiles()))


def _id_feature_names(schema: Schema) -> list[str]:
    names = [c.name for c in schema.numeric if c.numeric.bucketize is not None]
    names += [c.name for c in schema.categorical]
    return names


def build_pipeline(p: beam.Pipeline, schema: Schema, tasks: dict[str, list], output: str, args) -> None:
    """Wires read -> analyze/transform -> write for both splits into ``p``."""
    adapter = tensor_adapter_config(schema)
    preprocessing_fn = make_preprocessing_fn(schema)
    clean = {}
    for split in SPLITS:
        if not tasks[split]:
            continue
        read = p | f"Read{split.title()}" >> ReadRows(schema, tasks[split], split, with_label=True, keys=False,
                                                       batch_rows=args.batch_rows)
        clean[split] = read.rows
        _ = read[REJECTED] | f"Rejected{split.title()}" >> WriteRejected(os.path.join(output, "rejected", split))
    tft_input = {s: b | f"ToTft{s.title()}" >> beam.Map(to_tft_batch, adapter) for s, b in clean.items()}
    (train_out, _), transform_fn = ((tft_input["train"], adapter)
                                     | "AnalyzeAndTransform" >> tft_beam.AnalyzeAndTransformDataset(
                                         preprocessing_fn, output_record_batches=True))
    outputs = {"train": train_out}
    if "eval" in tft_input:
        outputs["eval"], _ = (((tft_input["eval"], adapter), transform_fn)
                              | "TransformEval" >> tft_beam.TransformDataset(output_record_batches=True))
    _ = transform_fn | "WriteTransformFn" >> tft_beam.WriteTransformFn(output)
    for split, out in outputs.items():
        _ = (out
             | f"Encode{split.title()}" >> beam.ParDo(_ToExamples(split))
             | f"Write{split.title()}" >> beam.io.WriteToTFRecord(
                 os.path.join(output, split, "part"), file_name_suffix=".tfrecord.gz",
                 num_shards=args.num_shards))
    profile = _train_profile(clean["train"], train_out, schema, _id_feature_names(schema))
    _ = (profile
         | "ProfileJson" >> beam.Map(lambda prof: stats_json(prof))
         | "WriteStats" >> beam.Map(lambda doc: mf.write_json(os.path.join(output, "stats.json"), doc)))


def stats_json(profile: stats.Profile) -> dict:
    return {"train": profile.to_dict()}


def _prepare_output(output: str) -> None:
    """Replaces a previous preprocess output; refuses to delete anything else."""
    if FileSystems.exists(output):
        previous = [os.path.join(output, n) for n in ("manifest.json", "transform_fn", "layout.json")]
        listing = FileSystems.match([os.path.join(output, "*")])[0].metadata_list
        if listing and not any(FileSystems.exists(x) for x in previous):
            raise FileExistsError(f"--output {output} exists and is not a ctrflow preprocess output; "
                                  "refusing to overwrite it")
        FileSystems.delete([output])
    FileSystems.mkdirs(output)


def run(argv: list[str] | None = None) -> dict:
    """Runs the job; returns the manifest (also written to OUTPUT/manifest.json)."""
    args, beam_args = build_arg_parser().parse_known_args(argv)
    setup_logging()
    watch = mf.Stopwatch()
    schema = load_schema(args.schema)
    output = args.output.rstrip("/")
    required = BatchParser(schema, with_label=True, keys=False).required_columns
    tasks, files = {}, {}
    for split, patterns in (("train", args.train), ("eval", args.eval)):
        tasks[split], files[split] = plan_reads(schema, patterns, required) if patterns else ([], [])
        logging.info("[%s] %d files, %d read tasks", split, len(files[split]), len(tasks[split]))
    watch.lap("plan")
    _prepare_output(output)
    temp = os.path.join(output, "tmp") if "://" in output else tempfile.mkdtemp(prefix="ctrflow-tft-")
    options = pipeline_options(beam_args)
    logging.info("running the preprocess pipeline (read, analyze, transform, write) ...")
    with beam.Pipeline(options=options) as p, tft_beam.Context(temp_dir=temp):
        build_pipeline(p, schema, tasks, output, args)
    result = p.result
    watch.lap("pipeline")

    found = mf.counters(result)
    splits = {}
    for split in SPLITS:
        if tasks[split]:
            counts = mf.split_counts(found, split, "output_rows")
            splits[split] = {**counts, "input_files": files[split]}
    tft_output = tft.TFTransformOutput(output)
    layout = build_layout(schema, tft_output.vocabulary_size_by_name)
    with FileSystems.create(os.path.join(output, "layout.json")) as f:
        f.write(layout.to_json().encode())
    with FileSystems.open(args.schema) as src, FileSystems.create(os.path.join(output, "schema.yaml")) as dst:
        dst.write(src.read())
    watch.lap("finalize")
    manifest = {
        "job": "preprocess",
        "schema": args.schema,
        "output": output,
        "splits": splits,
        "durations_s": {**watch.stages, "total": watch.total()},
        "versions": mf.library_versions(),
        "beam_options": beam_args,
    }
    mf.write_json(os.path.join(output, "manifest.json"), manifest)
    for split, counts in splits.items():
        mf.check_counts(counts, split, "output_rows", args.max_rejected_fraction,
                        os.path.join(output, "rejected", split + "-*.jsonl"))
    for split, counts in splits.items():
        logging.info("[%s] %d rows in, %d written, %d rejected", split, counts["input_rows"],
                     counts["output_rows"], counts["rejected_rows"])
    logging.info("preprocess done in %.1fs; outputs in %s", watch.total(), output)
    return manifest


if __name__ == "__main__":
    run()
