"""Beam combining of feature profiles (``pipeline.stats.Profile``), shared by both jobs."""
from __future__ import annotations

import apache_beam as beam

from pipeline.stats import Profile


class MergeProfiles(beam.CombineFn):
    """Merges per-batch Profiles into one."""

    def create_accumulator(self) -> Profile:
        return Profile()

    def add_input(self, acc: Profile, profile: Profile) -> Profile:
        return acc.merge(profile)

    def merge_accumulators(self, accs) -> Profile:
        out = Profile()
        for a in accs:
            out = out.merge(a)
        return out

    def extract_output(self, acc: Profile) -> Profile:
        return acc
