"""Scoring through each column's distinct values (beam_jobs.scoring.distinct_values) and the XLA-compiled signatures.

The reference is always ``score_and_ids``, the row-by-row transform + model
of the same SavedModel, on values an independent parser (pandas) produced.
"""
from __future__ import annotations

import os

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.dataset as ds
import pytest

from tests.conftest import CLICKS_SCHEMA, make_clicks, write_csv

NO_CROSSES = CLICKS_SCHEMA.split("crosses:")[0]
NUMERIC, STRINGS = ("age", "spend"), ("city", "device", "tag")


def _table(df: pd.DataFrame) -> pa.Table:
    """Typed raw columns as the job's parser hands them to the model (NaN / "" for missing)."""
    cols = {c: pa.array(pd.to_numeric(df[c], errors="coerce").to_numpy(np.float32)) for c in NUMERIC}
    cols.update({c: pa.array(df[c].fillna("").astype(str).tolist(), pa.string()) for c in STRINGS})
    return pa.table(cols)


def _reference(model, table: pa.Table) -> dict[str, np.ndarray]:
    import tensorflow as tf

    fn = model.signature("score_and_ids")
    out = fn(**{n: tf.constant(table.column(n).to_numpy(zero_copy_only=False), s.dtype)
                for n, s in fn.structured_input_signature[1].items()})
    return {k: v.numpy() for k, v in out.items()}


def _rows(n: int, seed: int) -> pd.DataFrame:
    """Eval-like rows with repeats, missing values, unseen cities and an unseen device."""
    df = make_clicks(n, seed=seed, first_id=50_000, new_cities=0.1)
    df.loc[df.index % 7 == 0, "spend"] = np.nan
    df.loc[df.index % 11 == 0, "device"] = "fridge"
    df.loc[df.index % 13 == 0, "city"] = np.nan
    df.loc[3, "age"] = 1e30  # beyond the training range: clipped like the row-by-row transform clips it
    return df


@pytest.fixture(scope="module")
def plain_run(tmp_path_factory):
    """The clicks schema without its cross (every feature reads one column), preprocessed and trained."""
    from ctrflow.beam_jobs.preprocess import job as preprocess
    from ctrflow.model import train

    root = tmp_path_factory.mktemp("plain")
    schema = root / "plain.yaml"
    schema.write_text(NO_CROSSES)
    train_csv = write_csv(make_clicks(3000, seed=1), root / "train.csv")
    data, model_dir = root / "data", root / "model"
    preprocess.run(["--schema", str(schema), "--train", train_csv, "--output", str(data)])
    train.run(["--data", str(data), "--output", str(model_dir), "--model", "deepfm", "--epochs", "1",
               "--batch-size", "256", "--verbose", "0", "--ensemble", "1"])
    return {"root": root, "model": str(model_dir)}


def test_column_sources_name_the_one_column_each_output_reads():
    from ctrflow.pipeline.column_sources import column_sources
    from ctrflow.schemas import loads_schema

    assert column_sources(loads_schema(CLICKS_SCHEMA, "clicks.yaml")) is None  # the city x device cross
    sources = column_sources(loads_schema(NO_CROSSES, "plain.yaml"))
    assert sources == {"city": "city", "device": "device", "tag": "tag",
                       "age": "age", "age__position": "age", "age__scaled": "age",
                       "spend": "spend", "spend__position": "spend", "spend__scaled": "spend"}
    multivalent = NO_CROSSES.replace("hash: {buckets: 13}", "hash: {buckets: 13}, multivalent: {delimiter: '|'}")
    assert column_sources(loads_schema(multivalent, "multi.yaml")) is None


@pytest.mark.slow
def test_distinct_value_scoring_equals_score_and_ids(plain_run):
    from ctrflow.beam_jobs.scoring.distinct_values import UniqueValueScorer
    from ctrflow.model.artifact import load

    model = load(os.path.join(plain_run["model"], "export"))
    scorer = UniqueValueScorer.create(model, rows_per_call=64)  # 1000 rows: 15 full calls and one padded
    assert scorer is not None
    table = _table(_rows(1000, seed=5))
    got, expected = scorer(table), _reference(model, table)
    assert sorted(got) == sorted(expected) == ["age", "city", "device", "score", "spend", "tag"]
    for name in expected:
        if name == "score":
            np.testing.assert_allclose(got[name], expected[name], rtol=0, atol=1e-6)
        else:
            assert got[name].tolist() == expected[name].tolist(), name
    assert len(np.unique(table.column("city").to_numpy(zero_copy_only=False))) < 30  # repeats were deduplicated
    empty = scorer(table.slice(0, 0))
    assert empty["score"].shape == (0,)


@pytest.mark.slow
def test_score_job_on_a_schema_without_crosses_scores_like_the_signature(plain_run, tmp_path, monkeypatch):
    """The job takes the distinct-values path here; every row's score matches ``score_and_ids``."""
    from ctrflow.beam_jobs.scoring import job as score
    from ctrflow.beam_jobs.scoring.distinct_values import UniqueValueScorer
    from ctrflow.model import artifact
    from ctrflow.model.artifact import load

    scored_rows = []
    original = UniqueValueScorer.__call__

    def counting(self, batch):
        scored_rows.append(batch.num_rows)
        return original(self, batch)

    monkeypatch.setattr(UniqueValueScorer, "__call__", counting)
    whole_loads = []
    monkeypatch.setattr(artifact, "load", lambda *a, **k: whole_loads.append(a) or load(*a, **k))

    df = _rows(3000, seed=6)
    day = write_csv(df, tmp_path / "day.csv")
    score.run(["--model", plain_run["model"], "--input", day, "--date", "2026-11-21", "--output",
               str(tmp_path / "out"), "--batch-rows", "1024", "--inference-batch-size", "256"])
    assert whole_loads == []  # only transform and score_features were loaded (artifact.load_parts)
    monkeypatch.undo()
    out = ds.dataset(str(tmp_path / "out"), format="parquet", exclude_invalid_files=True).to_table().to_pandas()
    out = out.set_index("request_id").loc[df["request_id"]]
    model = load(os.path.join(plain_run["model"], "export"))
    np.testing.assert_allclose(out["score"].to_numpy(), _reference(model, _table(df))["score"], rtol=0, atol=1e-6)
    rows = [n for n in scored_rows if n > 1]
    assert sum(rows) == 3000 and len(scored_rows) - len(rows) == 1, scored_rows  # one one-row warm-up, preload's


@pytest.mark.slow
def test_the_compiled_signatures_equal_score_and_ids(clicks_run):
    """``batch_score_and_ids`` (the cross schema's path) and ``score_features`` agree with ``score_and_ids``."""
    import tensorflow as tf

    from ctrflow.model.artifact import load

    model = load(os.path.join(clicks_run["model"], "export"))
    table = _table(_rows(500, seed=7))
    expected = _reference(model, table)
    fn = model.signature("batch_score_and_ids")
    got = fn(**{n: tf.constant(table.column(n).to_numpy(zero_copy_only=False), s.dtype)
                for n, s in fn.structured_input_signature[1].items()})
    assert sorted(got) == sorted(expected)
    np.testing.assert_allclose(got["score"].numpy(), expected["score"], rtol=0, atol=1e-6)
    for name in expected:
        if name != "score":
            assert got[name].numpy().tolist() == expected[name].tolist(), name
    raw = {n: tf.constant(table.column(n).to_numpy(zero_copy_only=False), s.dtype)
           for n, s in model.signature("score_and_ids").structured_input_signature[1].items()}
    transformed = model.loaded.transform(raw)
    features = model.signature("score_features")
    scored = features(**{n: transformed[n] for n in features.structured_input_signature[1]})["score"].numpy()
    np.testing.assert_allclose(scored, expected["score"], rtol=0, atol=1e-6)


def test_multivalent_ids_are_padded_to_a_power_of_two_width():
    import tensorflow as tf

    from ctrflow.model.export import _power_of_two_widths

    for width, padded in [(1, 1), (2, 2), (3, 4), (5, 8), (8, 8), (9, 16)]:
        ids = tf.reshape(tf.range(2 * width, dtype=tf.int64), [2, width])
        out = _power_of_two_widths({"genres": ids, "age": tf.constant([1.0, 2.0])}, ("genres",))
        assert out["genres"].shape == (2, padded), width
        assert out["genres"].numpy()[:, :width].tolist() == ids.numpy().tolist()
        assert (out["genres"].numpy()[:, width:] == -1).all()
        assert out["age"] is not None and out["age"].shape == (2,)


class _Broken:
    """A signature whose calls fail as they would where XLA cannot compile (its input signature intact)."""

    def __init__(self, real):
        self.structured_input_signature = real.structured_input_signature

    def __call__(self, **kwargs):
        raise RuntimeError("XLA compilation is not available here")


class _Loaded:
    """A loaded SavedModel with some signatures replaced by ``_Broken`` ones."""

    def __init__(self, real, broken: tuple[str, ...]):
        self.signatures = {k: (_Broken(v) if k in broken else v) for k, v in real.signatures.items()}
        self.transform = real.transform


@pytest.mark.slow
def test_a_compiled_path_that_fails_its_first_call_falls_back_to_score_and_ids(plain_run, caplog):
    from ctrflow.beam_jobs.scoring.model_handler import scoring_path
    from ctrflow.model.artifact import ExportedModel, load

    real = load(os.path.join(plain_run["model"], "export"))
    table = _table(_rows(300, seed=8))
    expected = _reference(real, table)
    chosen = []
    for broken, path_name in [((), "score_features"), (("score_features",), "batch_score_and_ids"),
                              (("score_features", "batch_score_and_ids"), "score_and_ids")]:
        model = ExportedModel(real.meta, _Loaded(real.loaded, broken))
        path = scoring_path(model, None, 128)
        chosen.append(path.signature)
        got = path.score(model, table.to_batches()[0] if table.num_rows else table)
        np.testing.assert_allclose(got["score"], expected["score"], rtol=0, atol=1e-6)
        assert got["city"].tolist() == expected["city"].tolist()
        assert scoring_path(model, None, 128) is path  # chosen once per model
    assert chosen == ["score_features", "batch_score_and_ids", "score_and_ids"]
    warnings = [r.getMessage() for r in caplog.records if "failed its first call" in r.getMessage()]
    assert len(warnings) == 3 and "XLA compilation is not available here" in warnings[0]


@pytest.mark.slow
def test_the_distinct_values_path_scores_the_same_from_a_load_of_only_its_functions(plain_run):
    """``artifact.load_parts`` loads ``transform`` and ``score_features`` alone; scores and ids equal a whole load's."""
    from ctrflow.beam_jobs.scoring.distinct_values import UniqueValueScorer
    from ctrflow.model.artifact import load, load_parts

    whole = load(os.path.join(plain_run["model"], "export"))
    part = load_parts(whole.meta, UniqueValueScorer.PARTS)
    assert part.partial and not whole.partial
    assert sorted(part.loaded.signatures) == ["score_features"]  # no other signature was loaded
    table = _table(_rows(700, seed=12))
    got = UniqueValueScorer.create(part, rows_per_call=256)(table)
    same = UniqueValueScorer.create(whole, rows_per_call=256)(table)
    expected = _reference(whole, table)
    assert sorted(got) == sorted(expected)
    np.testing.assert_array_equal(got["score"], same["score"])  # the same compiled function on the same ids
    np.testing.assert_allclose(got["score"], expected["score"], rtol=0, atol=1e-6)
    for name in ("age", "city", "device", "spend", "tag"):
        assert got[name].tolist() == expected[name].tolist(), name


@pytest.mark.slow
def test_the_scoring_load_falls_back_to_the_whole_export(plain_run, monkeypatch, caplog):
    """A partial load that fails, or a model the distinct-values path cannot score, gets the whole export."""
    import logging

    from ctrflow.beam_jobs.scoring import model_handler
    from ctrflow.beam_jobs.scoring.distinct_values import UniqueValueScorer
    from ctrflow.common.compat import tensorflow as tf_compat
    from ctrflow.model.artifact import load_metadata

    # _configure_tensorflow turns grappler off process-wide (as a scoring process wants); other tests here
    # compare against a child process that has it on, where float32 sums can differ in the last bit
    monkeypatch.setattr(model_handler, "_configure_tensorflow", lambda threads: None)
    meta = load_metadata(os.path.join(plain_run["model"], "export"))
    caplog.set_level(logging.INFO)
    fast = model_handler._load_and_warm(meta, 0, None, 128)
    assert fast.partial and model_handler.scoring_path(fast, None, 128).signature == "score_features"

    def broken(export_dir, paths):
        raise RuntimeError("internals moved")

    real = tf_compat.load_saved_model_parts
    monkeypatch.setattr(tf_compat, "load_saved_model_parts", broken)
    model = model_handler._load_and_warm(meta, 0, None, 128)
    assert not model.partial and model_handler.scoring_path(model, None, 128).signature == "score_features"
    monkeypatch.setattr(tf_compat, "load_saved_model_parts", real)
    monkeypatch.setattr(UniqueValueScorer, "create", classmethod(lambda cls, model, rows: None))
    model = model_handler._load_and_warm(meta, 0, None, 128)
    assert not model.partial and model_handler.scoring_path(model, None, 128).signature == "batch_score_and_ids"
    said = [r.getMessage() for r in caplog.records if "loading the whole export" in r.getMessage()]
    assert len(said) == 2 and "internals moved" in said[0] and "cannot score with distinct values" in said[1]


@pytest.mark.slow
def test_a_schema_with_crosses_loads_the_whole_export_without_trying_the_partial_load(clicks_run, monkeypatch,
                                                                                     caplog):
    """The clicks schema crosses two columns: the distinct-values path cannot apply, known before any load."""
    import logging

    from ctrflow.beam_jobs.scoring import model_handler
    from ctrflow.model import artifact

    monkeypatch.setattr(model_handler, "_configure_tensorflow", lambda threads: None)  # see the test above
    partial_loads = []
    monkeypatch.setattr(artifact, "load_parts", lambda *a: partial_loads.append(a))
    meta = artifact.load_metadata(os.path.join(clicks_run["model"], "export"))
    caplog.set_level(logging.INFO)
    model = model_handler._load_and_warm(meta, 0, None, 128)
    assert partial_loads == [] and not model.partial
    assert model_handler.scoring_path(model, None, 128).signature == "batch_score_and_ids"
    assert not [r for r in caplog.records if "loading the whole export" in r.getMessage()]


def test_extra_missing_ids_of_a_multivalent_field_change_no_score():
    """What ``_power_of_two_widths`` relies on: -1 columns added to a multivalent id matrix leave scores equal."""
    import tensorflow as tf

    from ctrflow.model.export import _power_of_two_widths
    from tests.test_models import LAYOUT, make_features, model_for

    model = model_for(LAYOUT, model="deepfm")
    x = make_features(LAYOUT, 64, tag_len=3)
    features = {k: tf.constant(v) for k, v in x.items()}
    padded = _power_of_two_widths(features, ("tags",))
    assert padded["tags"].shape == (64, 4)
    np.testing.assert_allclose(model.probabilities(padded).numpy(), model.probabilities(features).numpy(),
                               rtol=0, atol=1e-7)
