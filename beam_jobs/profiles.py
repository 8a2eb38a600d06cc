"""One Beam combiner that builds a feature profile (``pipeline.stats.Profile``), for both jobs.

Elements are ``(clean raw batch or None, {feature: transformed ids} or None)``:
preprocess feeds raw training batches and transformed batches separately
(they come from two reads), scoring feeds both halves of each scored batch.
Raw figures merge as Profiles; id histograms stay dense count arrays until
the end, so a batch costs one ``np.bincount`` per feature.
"""
from __future__ import annotations

from typing import Mapping

import apache_beam as beam

from ctrflow.pipeline import stats
from ctrflow.schemas.types import Schema


class ProfileCombine(beam.CombineFn):
    """(raw batch, ids) elements -> the Profile; ``baseline_ranges`` adds out-of-range counts."""

    def __init__(self, schema: Schema, baseline_ranges: Mapping[str, stats.NumericRange] | None = None):
        self.schema, self.ranges = schema, baseline_ranges

    def create_accumulator(self):
        return stats.Profile(), {}

    def add_input(self, acc, element):
        profile, counts = acc
        raw, ids = element
        if raw is not None:
            profile = profile.merge(stats.profile_raw(raw, self.schema, self.ranges))
        if ids:
            stats.add_id_counts(counts, ids)
        return profile, counts

    def merge_accumulators(self, accs):
        profile, counts = stats.Profile(), {}
        for p, c in accs:
            profile = profile.merge(p)
            for name, more in c.items():
                stats.merge_id_counts(counts, name, more)
        return profile, counts

    def extract_output(self, acc) -> stats.Profile:
        profile, counts = acc
        profile.ids.update(stats.id_histograms(counts))
        return profile
