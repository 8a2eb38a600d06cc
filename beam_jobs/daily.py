"""The daily-loop options of ``ctrflow preprocess``: --dates windows, --base, --analysis-cache.

Kept apart from the job module so the job stays one wiring function: this
module expands ``{date}`` patterns, decides what the analysis takes over
(``pipeline.prior.AnalysisPrior``), runs the per-day analysis of uncached days
and reports the vocabulary growth for the manifest.
"""
from __future__ import annotations

import argparse
import logging
import os

import apache_beam as beam

from ctrflow.beam_jobs import analysis_cache
from ctrflow.pipeline import prior as pr
from ctrflow.pipeline import vocab_extend
from ctrflow.pipeline.global_index import GLOBAL_VOCAB
from ctrflow.pipeline.transform import vocab_name
from ctrflow.schemas.types import Schema


def add_daily_args(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("daily loop")
    g.add_argument("--dates", help="FIRST:LAST (or one date): each --train pattern's '{date}' is replaced by "
                                   "every date of the window")
    g.add_argument("--base", metavar="PREVIOUS_DATA",
                   help="a previous preprocess output to extend: every vocabulary keeps its tokens' ids and "
                        "appends new tokens; bucket boundaries are kept (see --refit-buckets)")
    g.add_argument("--refit-buckets", action="store_true",
                   help="with --base: analyze bucket boundaries on this data instead of keeping the base's")
    g.add_argument("--analysis-cache", metavar="DIR",
                   help="with --dates: keep each day's analysis (token counts, quantile sketches, moments) in "
                        "DIR and analyze only the days not cached yet")


def expand_dates(patterns: list[str], dates: list[str] | None) -> tuple[list[str], dict[str, list[str]]]:
    """Patterns with '{date}' replaced by every date; also the patterns of each date."""
    if not dates:
        return patterns, {}
    if not any("{date}" in x for x in patterns):
        raise ValueError("--dates needs a --train pattern with '{date}' in it, e.g. 'events/{date}/*.csv'")
    by_date = {d: [x.replace("{date}", d) for x in patterns] for d in dates}
    return [x for d in dates for x in by_date[d]], by_date


def check_args(args: argparse.Namespace) -> None:
    if args.refit_buckets and not args.base:
        raise ValueError("--refit-buckets only applies with --base PREVIOUS_DATA")
    if args.analysis_cache and not args.dates:
        raise ValueError("--analysis-cache DIR caches per day: give the window with --dates FIRST:LAST")
    if args.analysis_cache and args.eval_fraction:
        raise ValueError("--analysis-cache cannot be combined with --eval-fraction (the cached days hold all "
                         "their rows); give the eval data with --eval")


def base_prior(base: str, schema: Schema, refit_buckets: bool) -> pr.AnalysisPrior:
    """Vocabularies to extend and the boundaries to keep, from a previous preprocess output."""
    names = [vocab_name(c.name) for c in schema.categorical if c.categorical.vocabulary is not None]
    if schema.global_index is not None:
        names.append(GLOBAL_VOCAB)
    files = tuple((n, vocab_extend.base_vocabulary_path(base, n)) for n in names)
    kept = () if refit_buckets else tuple(pr.read_kept_boundaries(base, schema).items())
    return pr.AnalysisPrior(base_vocabularies=files, boundaries=kept)


def run_cache(args: argparse.Namespace, schema: Schema, schema_text: str, dates: list[str],
              plan_date, options) -> tuple[pr.AnalysisPrior, dict]:
    """Analyzes the uncached days of the window (one Beam job) and merges every day from the cache."""
    root = analysis_cache.cache_root(args.analysis_cache, schema_text, args.train_patterns)
    missing = [d for d in dates if not analysis_cache.is_cached(root, d)]
    logging.info("analysis cache %s: %d of %d days cached, analyzing %s", root, len(dates) - len(missing),
                 len(dates), ", ".join(missing) or "none")
    if missing:
        with beam.Pipeline(options=options) as p:
            analysis_cache.analyze_days(p, schema, {d: plan_date(d) for d in missing}, root, args.batch_rows)
    prior = analysis_cache.prior_from_cache(root, dates, schema)
    return prior, {"dir": root, "dates": len(dates), "cached_dates": len(dates) - len(missing),
                   "analyzed_dates": missing}


def combine(base: pr.AnalysisPrior | None, cached: pr.AnalysisPrior | None) -> pr.AnalysisPrior | None:
    """Base vocabularies and kept boundaries win over what the cache would fit."""
    if base is None or cached is None:
        return base or cached
    boundaries = base.boundaries or cached.boundaries
    return pr.AnalysisPrior(base_vocabularies=base.base_vocabularies, prior_counts=cached.prior_counts,
                            boundaries=boundaries, scaling=cached.scaling)


def vocabulary_growth(base: str, output: str, prior: pr.AnalysisPrior) -> dict[str, dict]:
    """Per vocabulary: base size, tokens gained, final size (for the manifest)."""
    out = {}
    for name, base_file in prior.base_vocabularies:
        before = len(vocab_extend.read_vocabulary(base_file))
        after = len(vocab_extend.read_vocabulary(os.path.join(output, vocab_extend.TRANSFORM_ASSETS, name)))
        out[name] = {"base": before, "gained": after - before, "size": after}
    return out
