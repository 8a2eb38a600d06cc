"""The daily-loop steps of ``ctrflow preprocess``: --dates windows, --base, --analysis-cache.

The flags are fields of ``PreprocessOptions`` (validated there); kept apart
from the job module so the job stays one wiring function: this module expands
``{date}`` patterns, decides what the analysis takes over
(``pipeline.prior.AnalysisPrior``), runs the per-day analysis of uncached days
and reports the vocabulary growth for the manifest.
"""
from __future__ import annotations

import logging
import os

from ctrflow.beam_jobs.preprocess import analysis_cache
from ctrflow.beam_jobs.runners import new_pipeline
from ctrflow.pipeline import artifacts as af
from ctrflow.pipeline import prior as pr
from ctrflow.pipeline import vocab_extend
from ctrflow.pipeline.global_index import GLOBAL_VOCAB
from ctrflow.pipeline.transform import vocab_name
from ctrflow.schemas.types import Schema


def expand_dates(patterns: list[str], dates: list[str] | None) -> tuple[list[str], dict[str, list[str]]]:
    """Patterns with '{date}' replaced by every date; also the patterns of each date."""
    if not dates:
        return patterns, {}
    by_date = {d: [x.replace("{date}", d) for x in patterns] for d in dates}
    return [x for d in dates for x in by_date[d]], by_date


def base_prior(base: str, schema: Schema, refit_buckets: bool) -> pr.AnalysisPrior:
    """Vocabularies to extend and the boundaries to keep, from a previous preprocess output."""
    names = [vocab_name(c.name) for c in schema.categorical if c.categorical.vocabulary is not None]
    if schema.global_index is not None:
        names.append(GLOBAL_VOCAB)
    files = tuple((n, vocab_extend.base_vocabulary_path(base, n)) for n in names)
    kept = () if refit_buckets else tuple(pr.read_kept_boundaries(base, schema).items())
    return pr.AnalysisPrior(base_vocabularies=files, boundaries=kept)


def run_cache(options, schema: Schema, schema_text: str, window_patterns: list[str], dates: list[str],
              plan_date) -> tuple[pr.AnalysisPrior, dict]:
    """Analyzes the uncached days of the window (one Beam job) and merges every day from the cache.

    ``options``: the job's ``PreprocessOptions``; ``plan_date(d)``: the read tasks of day ``d``.
    """
    root = analysis_cache.cache_root(options.analysis_cache, schema_text, window_patterns)
    missing = [d for d in dates if not analysis_cache.is_cached(root, d)]
    logging.info("analysis cache %s: %d of %d days cached, analyzing %s", root, len(dates) - len(missing),
                 len(dates), ", ".join(missing) or "none")
    if missing:
        with new_pipeline(options.beam_args) as p:
            analysis_cache.analyze_days(p, schema, {d: plan_date(d) for d in missing}, root, options.batch_rows)
    prior = analysis_cache.prior_from_cache(root, dates, schema)
    return prior, {"dir": root, "dates": len(dates), "cached_dates": len(dates) - len(missing),
                   "analyzed_dates": missing}


def combine(base: pr.AnalysisPrior | None, cached: pr.AnalysisPrior | None) -> pr.AnalysisPrior | None:
    """Base vocabularies and kept boundaries win over what the cache would fit."""
    if base is None or cached is None:
        return base or cached
    boundaries = base.boundaries or cached.boundaries
    return pr.AnalysisPrior(base_vocabularies=base.base_vocabularies, prior_counts=cached.prior_counts,
                            boundaries=boundaries, scaling=cached.scaling, ranges=cached.ranges)


def vocabulary_growth(output: str, prior: pr.AnalysisPrior) -> dict[str, dict]:
    """Per vocabulary: base size, tokens gained, final size (for the manifest)."""
    out = {}
    for name, base_file in prior.base_vocabularies:
        before = len(vocab_extend.read_vocabulary(base_file))
        after = len(vocab_extend.read_vocabulary(os.path.join(output, af.TRANSFORM_ASSETS, name)))
        out[name] = {"base": before, "gained": after - before, "size": after}
    return out
