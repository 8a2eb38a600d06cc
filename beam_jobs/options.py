"""Typed options of the Beam jobs, built once at the CLI and handed to the pipeline builders.

``PreprocessOptions`` and ``ScoreOptions`` are frozen dataclasses: their fields
are the jobs' flags (``ctrflow.common.flags``), ``__post_init__`` is the one
place they are validated, and the job manifests record ``to_dict(options)``.
Flags that are not ours must be Beam pipeline options (``beam_args``, passed
on unchanged); anything else stops the job before it starts (``parse_job_options``).
"""
from __future__ import annotations

import argparse
import dataclasses
import datetime
import functools
from typing import TypeVar

from ctrflow.beam_jobs.input.plan import DEFAULT_BATCH_ROWS
from ctrflow.beam_jobs.runner_names import import_runner_options
from ctrflow.beam_jobs.scoring.arrow_tensors import INFERENCE_BATCH_ROWS  # noqa: F401 - the flag's default
from ctrflow.common.errors import OptionsError
from ctrflow.common.flags import FlagParser, build_parser, from_namespace, option, to_dict
from ctrflow.pipeline.drift import DEFAULT_PSI_THRESHOLD

OUTPUT_FORMATS = ("parquet", "csv", "tfrecord")

J = TypeVar("J", bound="BeamJobOptions")


def _comma_list(text: str) -> tuple[str, ...]:
    return tuple(c.strip() for c in text.split(",") if c.strip())


@dataclasses.dataclass(frozen=True, kw_only=True)
class BeamJobOptions:
    """Options every Beam job shares."""

    max_rejected_fraction: float = option(
        0.001, help="fail (after writing the rejected rows) if more than this fraction of any split's rows is "
                    "rejected")
    batch_rows: int = option(DEFAULT_BATCH_ROWS, help="rows per Arrow batch inside the pipeline")
    beam_args: tuple[str, ...] = option((), help="Beam pipeline options, passed through unchanged", cli=False)

    def __post_init__(self) -> None:
        if self.batch_rows <= 0:
            raise OptionsError(f"--batch-rows must be > 0, got {self.batch_rows}")
        if not 0.0 <= self.max_rejected_fraction <= 1.0:
            raise OptionsError(f"--max-rejected-fraction must be in [0, 1], got {self.max_rejected_fraction}")

    def to_dict(self) -> dict:
        return to_dict(self)


@dataclasses.dataclass(frozen=True, kw_only=True)
class PreprocessOptions(BeamJobOptions):
    """``ctrflow preprocess``: analyze train, transform train and eval, write TFRecords."""

    schema: str = option(help="schema YAML file (see schemas/)")
    train: tuple[str, ...] = option(
        help="training input: a file pattern (local, glob or gs://; CSV/TSV, Parquet or TFRecord of tf.Example) "
             "or bigquery://PROJECT.DATASET.TABLE or bigquery://SELECT ...")
    eval: tuple[str, ...] = option((), help="eval input file pattern")
    valid: tuple[str, ...] = option(
        (), help="validation input file pattern (e.g. the last days before eval): transformed with the training "
                 "graph, not analyzed, into a 'valid' split that `ctrflow train` selects and calibrates on instead "
                 "of its --valid-fraction hash holdout")
    eval_fraction: float = option(
        0.0, help="instead of --eval: send this fraction of the --train rows to eval, chosen by a stable hash of "
                  "--split-key, or without it of the row's feature values (identical rows land on the same side); "
                  "the same rows in every run and on every runner")
    split_key: str | None = option(
        None, help="column whose value decides a row's split with --eval-fraction, e.g. a user or request id "
                   "(rows sharing a key stay together); default: the row's feature values")
    output: str = option(help="output directory (local or gs://)")
    num_shards: int = option(0, help="TFRecord shards per split; 0 lets the runner choose")
    dates: str | None = option(
        None, metavar="FIRST:LAST", help="each --train pattern's '{date}' is replaced by every date of the window "
                                         "(or one date)")
    base: str | None = option(
        None, metavar="PREVIOUS_DATA", help="a previous preprocess output to extend: every vocabulary keeps its "
                                            "tokens' ids and appends new tokens; bucket boundaries are kept")
    refit_buckets: bool = option(False, help="with --base: analyze bucket boundaries on this data instead of "
                                             "keeping the base's")
    analysis_cache: str | None = option(
        None, metavar="DIR", help="with --dates: keep each day's analysis (token counts, quantile summaries, "
                                  "moments) in DIR and analyze only the days not cached yet")
    tf2_transform_graph: bool = option(
        False, help="run tf.Transform in its TF2 mode and write transform_fn/ as a TF2 SavedModel (slower: it "
                    "traces, saves and reloads a tf.function between the two passes). The default TF1 graph serves "
                    "the same through ctrflow's export and TFTransformOutput.transform_features_layer(); its "
                    "transform_raw_features() needs graph mode")

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.eval_fraction and (self.eval or not 0 < self.eval_fraction < 1):
            raise OptionsError("--eval-fraction F (0 < F < 1) splits the --train input (by --split-key COLUMN "
                               "or by row); give it without --eval")
        if self.split_key and not self.eval_fraction:
            raise OptionsError("--split-key only applies with --eval-fraction F")
        if self.num_shards < 0:
            raise OptionsError(f"--num-shards must be >= 0, got {self.num_shards}")
        if self.dates is not None:
            parse_dates(self.dates)
            if not any("{date}" in x for x in self.train):
                raise OptionsError("--dates needs a --train pattern with '{date}' in it, e.g. 'events/{date}/*.csv'")
        if self.refit_buckets and not self.base:
            raise OptionsError("--refit-buckets only applies with --base PREVIOUS_DATA")
        if self.base and self.base.rstrip("/") == self.output.rstrip("/"):
            raise OptionsError(f"--base {self.base} is also --output: write the extended data to a new folder")
        if self.analysis_cache and not self.dates:
            raise OptionsError("--analysis-cache DIR caches per day: give the window with --dates FIRST:LAST")
        if self.analysis_cache and self.eval_fraction:
            raise OptionsError("--analysis-cache cannot be combined with --eval-fraction (the cached days hold all "
                               "their rows); give the eval data with --eval")

    @property
    def split_columns(self) -> tuple[str, ...]:
        """Extra input columns the clean rows carry: the hash split's key."""
        return (self.split_key,) if self.eval_fraction and self.split_key else ()


@dataclasses.dataclass(frozen=True, kw_only=True)
class ScoreOptions(BeamJobOptions):
    """``ctrflow score``: score daily tables with an exported model, with a drift report."""

    model: str = option(help="MODEL_DIR of `ctrflow train` (or its export/ folder)")
    input: tuple[str, ...] = option(help="input file pattern; '{date}' is replaced by each date")
    date: str = option(help="scoring date YYYY-MM-DD, or a range FIRST:LAST (one partition per date)")
    output: str = option(help="output folder; each date goes to OUTPUT/date=YYYY-MM-DD/")
    passthrough: tuple[str, ...] = option(
        (), parse=_comma_list, metavar="COL[,COL...]",
        help="comma-separated extra input columns to copy into the output (the schema's id and passthrough "
             "columns are always copied)")
    psi_threshold: float = option(DEFAULT_PSI_THRESHOLD, help="features with PSI above this are reported as drifted")
    fail_on_drift: bool = option(
        False, help="exit non-zero when any feature drifts over the threshold (after writing the output)")
    output_format: str = option(
        "parquet", choices=OUTPUT_FORMATS,
        help="score file format under OUTPUT/date=D/; tfrecord writes gzip tf.Examples (float64 passthrough "
             "columns become float32, the date a string)")
    output_table: str | None = option(
        None, metavar="PROJECT:DATASET.TABLE",
        help="also load the scores into this BigQuery table's date partition, replacing table$YYYYMMDD in one "
             "copy job only after the rejected-rows check passed; files and reports still go to OUTPUT/date=D/")
    inference_batch_size: int = option(
        INFERENCE_BATCH_ROWS,
        help="rows per model call; larger --batch-rows batches are cut to this size (0: one call per batch). "
             "The default keeps a call's intermediate tensors in the CPU cache: the model's CPU per row was "
             "lowest at this size on the scoring benchmark")
    model_threads: int = option(
        0, help="TensorFlow intra/inter-op threads per worker process (0: TensorFlow's choice)")

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.inference_batch_size < 0 or self.model_threads < 0:
            raise OptionsError("--inference-batch-size and --model-threads must be >= 0")
        if self.output_table and "$" in self.output_table:
            raise OptionsError(f"--output-table {self.output_table}: give the table without a partition decorator")
        parse_dates(self.date)

    @property
    def dates(self) -> list[str]:
        return parse_dates(self.date)


def parse_dates(spec: str) -> list[str]:
    """'2026-11-21' or '2026-11-01:2026-11-07' -> ISO dates."""
    try:
        parts = [datetime.date.fromisoformat(s.strip()) for s in spec.split(":")]
    except ValueError as e:
        raise OptionsError(f"--date {spec!r}: expected YYYY-MM-DD or FIRST:LAST ({e})") from None
    if len(parts) == 1:
        return [parts[0].isoformat()]
    if len(parts) != 2 or parts[1] < parts[0]:
        raise OptionsError(f"--date {spec!r}: a range is FIRST:LAST with FIRST <= LAST")
    return [(parts[0] + datetime.timedelta(days=i)).isoformat() for i in range((parts[1] - parts[0]).days + 1)]


BEAM_EPILOG = ("Any other flag must be a Beam pipeline option and is passed through unchanged, e.g. --runner "
               "DataflowRunner --project P --region R --temp_location gs://b/tmp, or --direct_num_workers 2 "
               "--direct_running_mode multi_processing. A flag that neither ctrflow nor Beam knows stops the "
               "job (exit 2).")


def job_parser(cls: type[BeamJobOptions], prog: str, description: str) -> FlagParser:
    return build_parser(cls, prog, description, epilog=BEAM_EPILOG)


def _beam_parser_and_flags() -> tuple[argparse.ArgumentParser, tuple[str, ...]]:
    from apache_beam.options.pipeline_options import PipelineOptions

    # every registered options class: a runner's own (DaskOptions) registers when its module is imported
    return _parser_of(tuple({str(c): c for c in PipelineOptions.__subclasses__()}.values()))


@functools.lru_cache(maxsize=4)
def _parser_of(classes: tuple[type, ...]) -> tuple[argparse.ArgumentParser, tuple[str, ...]]:
    """The parser ``PipelineOptions.get_all_options`` builds from ``classes`` (every registered options class).

    Beam's public API hands it to ``get_all_options``' ``add_extra_args_fn``: exactly what Beam parses.
    """
    from apache_beam.options.pipeline_options import PipelineOptions

    found: list[argparse.ArgumentParser] = []
    PipelineOptions([]).get_all_options(add_extra_args_fn=found.append)
    parser = found[0]
    flags = tuple(s for action in parser._actions for s in action.option_strings)  # noqa: SLF001 - argparse's list
    return parser, flags


def beam_flags() -> tuple[str, ...]:
    """Every flag Beam's registered PipelineOptions classes recognize."""
    return _beam_parser_and_flags()[1]


def unknown_to_beam(args: list[str]) -> list[str]:
    """The arguments Beam's PipelineOptions would discard ("Discarding unparseable args").

    A runner's own options module (``runner_names.RUNNER_OPTIONS_MODULES``) is imported for the chosen
    ``--runner``, and for every runner before an argument is called unknown.
    """
    parser, _ = _beam_parser_and_flags()
    known, unknown = parser.parse_known_args(list(args))
    if known.runner:
        import_runner_options(known.runner)
        parser, _ = _beam_parser_and_flags()
        _, unknown = parser.parse_known_args(list(args))
    if unknown:
        import_runner_options()
        parser, _ = _beam_parser_and_flags()
        _, unknown = parser.parse_known_args(list(args))
    return unknown


def parse_job_options(cls: type[J], parser: FlagParser, argv: list[str] | None) -> J:
    """Our flags into ``cls``; the rest must be Beam's, else one line and exit 2."""
    ns, rest = parser.parse_known_args(argv)
    unknown = unknown_to_beam(rest)
    if unknown:
        parser.reject_unknown(unknown, also_valid=beam_flags())
    return from_namespace(cls, ns, beam_args=tuple(rest))
