"""The hash split: stable per key, the asked fraction, disjoint, and counted in the preprocess manifest."""
import os

import apache_beam as beam
import numpy as np
import pyarrow as pa
import pytest

from ctrflow.beam_jobs.preprocess.splits import HashSplit, eval_mask
from tests.conftest import CLICKS_SCHEMA, make_clicks, write_csv

KEYS = pa.array([f"user-{i}" for i in range(20_000)])


def test_same_key_same_split_whatever_the_batching():
    whole = eval_mask(KEYS, 0.2)
    chunks = np.concatenate([eval_mask(KEYS.slice(i, 777), 0.2) for i in range(0, len(KEYS), 777)])
    assert (whole == chunks).all() and (whole == eval_mask(KEYS, 0.2)).all()
    assert abs(whole.mean() - 0.2) < 0.01
    assert (eval_mask(KEYS, 0.1) <= whole).all()  # a smaller fraction is a subset
    ints = eval_mask(pa.array(range(1000), pa.int64()), 0.3)
    assert (ints == eval_mask(pa.array([str(i) for i in range(1000)]), 0.3)).all()


def _run_split(tmp_path, name, batch_rows):
    with beam.Pipeline() as p:
        batches = (p | beam.Create([KEYS.slice(i, batch_rows) for i in range(0, len(KEYS), batch_rows)])
                   | beam.Map(lambda a: pa.RecordBatch.from_arrays([a], ["k"])))
        kept, held = batches | HashSplit("k", 0.25)
        for label, pc in (("train", kept), ("eval", held)):
            _ = (pc | f"Keys{label}" >> beam.FlatMap(lambda b: b.column("k").to_pylist())
                 | f"Write{label}" >> beam.io.WriteToText(str(tmp_path / name / label)))
    def read(label):
        return {line.strip() for f in os.listdir(tmp_path / name) if f.startswith(label)
                for line in open(tmp_path / name / f)}
    return read("train"), read("eval")


def test_hash_split_in_beam_is_disjoint_complete_and_repeatable(tmp_path):
    train1, eval1 = _run_split(tmp_path, "a", 1000)
    train2, eval2 = _run_split(tmp_path, "b", 333)
    assert (train1, eval1) == (train2, eval2)
    assert not train1 & eval1 and len(train1 | eval1) == len(KEYS)
    assert abs(len(eval1) / len(KEYS) - 0.25) < 0.01


@pytest.mark.slow
def test_preprocess_hash_split_counts_add_up(tmp_path):
    from ctrflow.beam_jobs.preprocess import job as preprocess

    (tmp_path / "s.yaml").write_text(CLICKS_SCHEMA)
    df = make_clicks(3000, seed=3)
    csv = write_csv(df, tmp_path / "all.csv")
    m = preprocess.run(["--schema", str(tmp_path / "s.yaml"), "--train", csv, "--eval-fraction", "0.2",
                        "--split-key", "request_id", "--output", str(tmp_path / "out")])
    train, ev = m["splits"]["train"], m["splits"]["eval"]
    expected_eval = int(eval_mask(pa.array(df["request_id"].astype(str)), 0.2).sum())
    assert ev["input_rows"] == ev["output_rows"] == expected_eval
    assert train["input_rows"] == train["output_rows"] == 3000 - expected_eval
    assert train["rejected_rows"] == ev["rejected_rows"] == 0
    assert abs(expected_eval / 3000 - 0.2) < 0.03
    assert ev["hash_split"] == {"of": "train", "key": "request_id", "eval_fraction": 0.2}
    assert any(f.startswith("part") for f in os.listdir(os.path.join(m["output"], "eval")))


def test_eval_fraction_needs_a_key_and_no_eval(tmp_path):
    from ctrflow.beam_jobs.preprocess import job as preprocess

    with pytest.raises(ValueError, match="--split-key"):
        preprocess.run(["--schema", "x.yaml", "--train", "t.csv", "--eval-fraction", "0.2", "--output", "o"])
    with pytest.raises(ValueError, match="no --eval"):
        preprocess.run(["--schema", "x.yaml", "--train", "t.csv", "--eval", "e.csv", "--eval-fraction", "0.2",
                        "--split-key", "k", "--output", "o"])
