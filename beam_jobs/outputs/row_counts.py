"""A job's row counts as data: counted in the pipeline, summed by a combine, written as one small JSON file.

Beam metrics depend on the runner: the DaskRunner has none, portable runners
report only attempted values (a retried bundle counts twice). The check that
every row read was written or rejected (``manifest.check_counts``) must not,
so the counts travel as elements: ``{"<split>/<what>": n}`` dicts from the
reading transform (``input.transforms.COUNTS``) and from what goes to the
writers, summed by one ``CombineGlobally`` and written to ``row_counts.json``
in the run's folder, which the job reads after the run. Metrics stay for
progress logging only.
"""
from __future__ import annotations

import os
from typing import Callable, Iterable

import apache_beam as beam
from apache_beam.io.filesystems import FileSystems

from ctrflow.beam_jobs.outputs.manifest import read_json, write_json
from ctrflow.pipeline.artifacts import ROW_COUNTS


def sum_counts(counts: Iterable[dict[str, int]]) -> dict[str, int]:
    """Sums count dicts by key (associative and commutative: a combine may apply it to partial sums)."""
    out: dict[str, int] = {}
    for c in counts:
        for k, v in c.items():
            out[k] = out.get(k, 0) + int(v)
    return out


def count_of(key: str, rows: Callable = len) -> beam.Map:
    """A Map of each element to ``{key: rows(element)}``."""
    return beam.Map(lambda element: {key: int(rows(element))})


class WriteRowCounts(beam.PTransform):
    """Count dicts (a tuple of PCollections) -> their sum written to ``<folder>/row_counts.json``.

    A ``{}`` is always added, so the file is written for an input without rows
    too, and its absence after a run means the runner did not run this branch.
    """

    def __init__(self, folder: str):
        super().__init__()
        self.path = os.path.join(folder, ROW_COUNTS)

    def expand(self, counts):
        counts = (counts,) if isinstance(counts, beam.PCollection) else tuple(counts)
        nothing = counts[0].pipeline | "NoRows" >> beam.Create([{}])
        return ((*counts, nothing)
                | "AllCounts" >> beam.Flatten()
                | "Sum" >> beam.CombineGlobally(sum_counts).without_defaults()
                | "Write" >> beam.Map(lambda summed, path: write_json(path, summed), self.path))


def read_row_counts(folder: str) -> dict[str, int]:
    """The counts ``WriteRowCounts`` wrote into ``folder``; fails in one line when the runner did not write them."""
    path = os.path.join(folder, ROW_COUNTS)
    if not FileSystems.exists(path):
        raise RuntimeError(f"{path} was not written: the runner did not run every branch of the pipeline, so "
                           "rows may have been lost")
    return {k: int(v) for k, v in read_json(path).items()}
