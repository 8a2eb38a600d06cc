"""The bundled schemas of the shared real datasets describe their files (first rows parse, none rejected)."""
from __future__ import annotations

import os
from pathlib import Path

import pytest

from benchmarks import quality
from ctrflow.beam_jobs.input.plan import plan_reads
from ctrflow.beam_jobs.input.readers import read_csv_bytes, read_head
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
        [(raw, bad)] = list(read_csv_bytes(schema, reads[0], read_head(reads[0], 1 << 20), 500))[:1]
        result = parser.parse(raw, path)
        assert raw.num_rows >= 100 and not bad and not result.rejected, (path, bad[:1], result.rejected[:1])
        labels = result.batch.column(schema.label.name).to_numpy()
        assert 0.1 < labels.mean() < 0.7  # both classes present (README positive rates: 17% .. 55%)


def test_frappe_user_item_cross_has_few_collisions() -> None:
    """The frappe cross memorises (user, item) pairs: its buckets outnumber the train file's distinct
    pairs >= 20 to 1, so fewer than 5% of pairs share a bucket (1 - exp(-pairs / buckets))."""
    ds = quality.DATASETS["frappe"]
    if not os.path.exists(os.path.join(quality.SHARED, ds.needs)):
        pytest.skip(f"{quality.SHARED}/{ds.needs} is absent (shared data not present)")
    schema = load_schema(bundled_schema_path("frappe"))
    [cross] = schema.crosses
    assert cross.columns == ("user", "item")
    train, _ = ds.prepare("")
    with open(train[0]) as f:
        pairs = {tuple(line.split()[1:3]) for line in f if line.strip()}
    assert len(pairs) * 20 <= cross.hash_buckets, len(pairs)
