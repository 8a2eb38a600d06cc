"""The hash split: stable per key, the asked fraction, disjoint, and counted in the preprocess manifest."""
import os

import apache_beam as beam
import numpy as np
import pyarrow as pa
import pytest

from ctrflow.beam_jobs.preprocess.splits import HashSplit, eval_mask, row_keys
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
    assert ev["hash_split"] == {"of": "train", "key": "request_id", "columns": ["request_id"], "eval_fraction": 0.2}
    assert any(f.startswith("part") for f in os.listdir(os.path.join(m["output"], "eval")))


def test_eval_fraction_without_eval_and_split_key_only_with_it(tmp_path):
    from ctrflow.beam_jobs.preprocess import job as preprocess

    with pytest.raises(ValueError, match="without --eval"):
        preprocess.run(["--schema", "x.yaml", "--train", "t.csv", "--eval", "e.csv", "--eval-fraction", "0.2",
                        "--split-key", "k", "--output", "o"])
    with pytest.raises(ValueError, match="--split-key only applies with --eval-fraction"):
        preprocess.run(["--schema", "x.yaml", "--train", "t.csv", "--split-key", "k", "--output", "o"])


def test_row_keys_join_the_values_as_text():
    batch = pa.RecordBatch.from_pydict({
        "age": pa.array([39.0, 0.1, float("nan"), 1e20], pa.float32()),
        "city": pa.array(["Paris", "", "Oslo", None]),
    })
    assert row_keys(batch, ("city",)).to_pylist() == ["Paris", "", "Oslo", ""]
    assert row_keys(batch, ("age", "city")).to_pylist() == ["39\x1fParis", "0.1\x1f", "nan\x1fOslo", "1e+20\x1f"]


NO_ID_SCHEMA = """
name: noid
format: {type: csv, header: true, null_markers: ["", "NA"]}
columns:
  - {name: age, role: numeric, bucketize: 4}
  - {name: city, role: categorical, vocabulary: {}}
  - {name: note, role: ignored}
  - {name: y, role: label, positive: ["1"], negative: ["0"]}
"""


def _fingerprint_eval(texts: list[str], fraction: float) -> np.ndarray:
    """The documented rule: FarmHash Fingerprint64 of the key text, modulo 10^9, below fraction * 10^9."""
    import tensorflow as tf

    return tf.strings.to_hash_bucket_fast(texts, 10**9).numpy() < fraction * 10**9


@pytest.mark.slow
def test_preprocess_splits_a_table_without_id_by_row(tmp_path):
    """No --split-key: the row's feature values decide, so identical rows (whatever label or ignored column) go
    together; the eval rows of a real run equal those recomputed here from the CSV text."""
    import collections

    import pandas as pd
    import tensorflow as tf
    import tensorflow_transform as tft

    from ctrflow.beam_jobs.preprocess import job as preprocess
    from ctrflow.pipeline.artifacts import live_dir

    rng = np.random.default_rng(7)
    n = 600
    df = pd.DataFrame({"age": rng.integers(18, 81, n).astype(float), "city": [f"c{v}" for v in rng.integers(0, 12, n)],
                       "note": [f"n{v}" for v in range(n)], "y": rng.integers(0, 2, n)})
    df.loc[rng.random(n) < 0.05, "age"] = np.nan
    copies = df.head(200).assign(note="copy", y=rng.integers(0, 2, 200))  # same features, other label and note
    df = pd.concat([df, copies], ignore_index=True)
    csv = tmp_path / "all.csv"
    df.to_csv(csv, index=False, na_rep="NA", float_format="%.0f")
    (tmp_path / "s.yaml").write_text(NO_ID_SCHEMA)
    m = preprocess.run(["--schema", str(tmp_path / "s.yaml"), "--train", str(csv), "--eval-fraction", "0.3",
                        "--output", str(tmp_path / "out")])

    raw = pd.read_csv(csv, dtype=str, keep_default_na=False)  # the file's text
    keys = [("nan" if a == "NA" else a) + "\x1f" + c for a, c in zip(raw["age"], raw["city"])]
    to_eval = _fingerprint_eval(keys, 0.3)
    assert all(to_eval[i] == to_eval[600 + i] for i in range(200))  # the copies follow their originals
    ev = m["splits"]["eval"]
    assert ev["input_rows"] == ev["output_rows"] == int(to_eval.sum())
    assert m["splits"]["train"]["output_rows"] == len(df) - int(to_eval.sum())
    assert 0.2 < to_eval.mean() < 0.4
    assert ev["hash_split"] == {"of": "train", "key": "row", "columns": ["age", "city"], "eval_fraction": 0.3}

    out = tft.TFTransformOutput(live_dir(str(tmp_path / "out")))
    vocab = [t.decode() for t in out.vocabulary_by_name("vocab_city")]
    assert set(vocab) == set(raw["city"][~to_eval])  # analyzed on the training side only
    files = tf.io.gfile.glob(os.path.join(live_dir(str(tmp_path / "out")), "eval", "part-*"))
    records = tf.data.TFRecordDataset(files, compression_type="GZIP").batch(10_000).get_single_element()
    parsed = tf.io.parse_example(records, out.transformed_feature_spec())
    written = collections.Counter(zip((vocab[i] for i in parsed["city"].numpy().ravel()),
                                      parsed["y"].numpy().ravel().astype(int).tolist()))
    expected = collections.Counter(zip(raw["city"][to_eval], raw["y"][to_eval].astype(int).tolist()))
    assert written == expected
