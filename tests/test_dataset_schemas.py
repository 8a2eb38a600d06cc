"""The bundled schemas of the shared real datasets describe their files (first rows parse, none rejected)."""
from __future__ import annotations

import os
from pathlib import Path

import pytest

from benchmarks import quality
from ctrflow.beam_jobs.sources import _head, _read_csv_bytes, plan_reads
from ctrflow.pipeline.parsing import BatchParser
from ctrflow.schemas import bundled_schema_path, load_schema


@pytest.mark.parametrize("name", ["criteo", "avazu", "movielens", "frappe"])
def test_schema_parses_the_first_rows_of_every_file(name: str, tmp_path: Path) -> None:
    ds = quality.DATASETS[name]
    if not os.path.exists(os.path.join(quality.SHARED, ds.needs)):
        pytest.skip(f"{quality.SHARED}/{ds.needs} is absent (shared data not present)")
    schema = load_schema(bundled_schema_path(name))
    train, evals = ds.prepare(str(tmp_path))
    parser = BatchParser(schema, with_label=True, keys=False)
    for path in train + evals:
        reads, _ = plan_reads(schema, [path], parser.required_columns)
        [(raw, bad)] = list(_read_csv_bytes(schema, reads[0], _head(reads[0]), 500))[:1]
        result = parser.parse(raw, path)
        assert raw.num_rows >= 100 and not bad and not result.rejected, (path, bad[:1], result.rejected[:1])
        labels = result.batch.column(schema.label.name).to_numpy()
        assert 0.1 < labels.mean() < 0.7  # both classes present (README positive rates: 17% .. 55%)
