"""The score job's prediction-drift branch: bins every score into the model's eval-score bins.

Kept out of ``beam_jobs.scoring.job`` so the job only wires it: ``profile_scores``
adds one combine over the inference results and writes
``score_profile.json``; ``prediction_section`` turns it into the
``prediction`` section of drift.json (PSI against the model's own eval scores,
``pipeline.score_profile``).
"""
from __future__ import annotations

import os

import apache_beam as beam
import numpy as np
from apache_beam.io.filesystems import FileSystems

from ctrflow.beam_jobs.outputs import manifest as mf
from ctrflow.model.artifact import ModelMetadata
from ctrflow.pipeline import artifacts as af
from ctrflow.pipeline import score_profile

_FALLBACK_EDGES = [round(i / score_profile.BINS, 6) for i in range(1, score_profile.BINS)]


def reference(meta: ModelMetadata) -> dict | None:
    return meta.info.get("eval_score_profile")


def edges(meta: ModelMetadata) -> list[float]:
    """The model's eval-score bin edges; equal-width bins for models exported without them."""
    ref = reference(meta)
    return list(ref["edges"]) if ref and ref.get("edges") else _FALLBACK_EDGES


def bin_scores(scores, bin_edges: list[float]) -> tuple[np.ndarray, float, int]:
    """One batch's scores -> (counts per bin, sum, rows): what reaches the combine (not the scores)."""
    scores = np.asarray(scores, np.float64).reshape(-1)
    return np.asarray(score_profile.counts(scores, bin_edges), np.int64), float(scores.sum()), len(scores)


class ScoreHistogram(beam.CombineFn):
    """Per-batch ``bin_scores`` partials -> {counts per bin, mean, edges}."""

    def __init__(self, bin_edges: list[float]):
        self.edges = bin_edges

    def create_accumulator(self):
        return np.zeros(len(self.edges) + 1, np.int64), 0.0, 0

    def add_input(self, acc, partial):
        return self.merge_accumulators([acc, partial])

    def merge_accumulators(self, accs):
        c, s, n = self.create_accumulator()
        for ac, as_, an in accs:
            c, s, n = c + ac, s + as_, n + an
        return c, s, n

    def extract_output(self, acc):
        c, s, n = acc
        return {"counts": c.astype(int).tolist(), "mean": s / n if n else None, "edges": self.edges}


def profile_scores(results, meta: ModelMetadata, version_dir: str) -> None:
    """Adds the score histogram branch to the scoring pipeline (binned per batch, like ``ProfileBatches``).

    Without Beam's default value for no input (two stages less): a day without
    rows gets its empty histogram from ``write_empty_if_missing`` after the run.
    """
    bin_edges = edges(meta)
    _ = (results
         | "Scores" >> beam.Map(lambda r: bin_scores(r.inference["score"], bin_edges))
         | "ScoreHistogram" >> beam.CombineGlobally(ScoreHistogram(bin_edges)).without_defaults()
         | "WriteScoreProfile" >> beam.Map(lambda doc: mf.write_json(os.path.join(version_dir, af.SCORE_PROFILE), doc)))


def write_empty_if_missing(meta: ModelMetadata, version_dir: str) -> None:
    """The histogram of no scores, where the pipeline wrote none (a day without rows)."""
    path = os.path.join(version_dir, af.SCORE_PROFILE)
    if not FileSystems.exists(path):
        histogram = ScoreHistogram(edges(meta))
        mf.write_json(path, histogram.extract_output(histogram.create_accumulator()))


def prediction_section(meta: ModelMetadata, version_dir: str) -> dict | None:
    path = os.path.join(version_dir, af.SCORE_PROFILE)
    if not FileSystems.exists(path):
        return None
    doc = mf.read_json(path)
    return score_profile.prediction_drift(reference(meta), doc["counts"], doc["mean"], doc["edges"])
