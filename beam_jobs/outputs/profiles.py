"""One Beam transform that builds a feature profile (``pipeline.stats.Profile``), for both jobs.

Elements are ``(clean raw batch or None, {feature: transformed ids} or None)``:
preprocess feeds raw training batches and transformed batches separately
(they come from two reads), scoring feeds both halves of each scored batch.
Raw figures merge as Profiles; id histograms stay dense count arrays until
the end, so a batch costs one ``np.bincount`` per feature.

Each batch is profiled by a ParDo in the stage that produced it, and only the
small per-batch accumulators reach the global combine. Why: the DirectRunner
encodes every element entering ``CombineGlobally`` with Beam's pickle
fallback coder (each element pickled twice): every scored Arrow batch and
its id arrays; the accumulators are a small fraction of that.
"""
from __future__ import annotations

from typing import Any, Callable, Mapping

import apache_beam as beam

from ctrflow.pipeline import stats
from ctrflow.schemas.types import Schema

Accumulator = tuple  # (stats.Profile, {feature: id counts})


def empty_accumulator() -> Accumulator:
    return stats.Profile(), {}


def profile_element(schema: Schema, ranges: Mapping[str, stats.NumericRange] | None, element) -> Accumulator:
    """One ``(raw batch, ids)`` element -> its accumulator."""
    raw, ids = element
    profile, counts = empty_accumulator()
    if raw is not None:
        profile = stats.profile_raw(raw, schema, ranges)
    if ids:
        stats.add_id_counts(counts, ids)
    return profile, counts


class MergeProfiles(beam.CombineFn):
    """Per-batch accumulators -> the Profile."""

    def create_accumulator(self) -> Accumulator:
        return empty_accumulator()

    def add_input(self, acc: Accumulator, partial: Accumulator) -> Accumulator:
        return self.merge_accumulators([acc, partial])

    def merge_accumulators(self, accs) -> Accumulator:
        profile, counts = empty_accumulator()
        for p, c in accs:
            profile = profile.merge(p)
            for name, more in c.items():
                stats.merge_id_counts(counts, name, more)
        return profile, counts

    def extract_output(self, acc: Accumulator) -> stats.Profile:
        profile, counts = acc
        profile.ids.update(stats.id_histograms(counts))
        return profile


class ProfileBatches(beam.PTransform):
    """Batches -> one ``stats.Profile``; ``baseline_ranges`` adds out-of-range counts.

    ``to_element`` turns a batch of the input PCollection (a RecordBatch, a
    PredictionResult, ...) into the ``(raw batch, ids)`` pair in the same
    step: a PCollection of such pairs would be pickled once more by Beam's
    element-size sampling, which encodes tuples with the fallback coder.
    """

    def __init__(self, schema: Schema, to_element: Callable[[Any], tuple],
                 baseline_ranges: Mapping[str, stats.NumericRange] | None = None, *, default: bool = True):
        super().__init__()
        self.schema, self.to_element, self.ranges = schema, to_element, baseline_ranges
        # default=False: no output for no input, and no Beam stages for that default value (``empty_profile``)
        self.default = default

    def expand(self, batches):
        merge = beam.CombineGlobally(MergeProfiles())
        return (batches
                | "PerBatch" >> beam.Map(lambda b, schema, ranges, to_element: profile_element(
                    schema, ranges, to_element(b)), self.schema, self.ranges, self.to_element)
                | "Merge" >> (merge if self.default else merge.without_defaults()))


def empty_profile() -> stats.Profile:
    """What ``ProfileBatches`` outputs for no input."""
    return MergeProfiles().extract_output(empty_accumulator())
