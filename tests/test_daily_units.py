"""Fast checks of the daily-loop pieces: append-only extension, quantile summaries, gate decision, rules."""
from __future__ import annotations

import numpy as np
import pyarrow as pa
import pytest

from ctrflow.beam_jobs.preprocess.analysis_cache import SUMMARY_POINTS, Summary, numeric_value, tokens
from ctrflow.pipeline.vocab_extend import extend, extend_global
from ctrflow.schemas import loads_schema


def _counts(d: dict[bytes, int]) -> pa.Table:
    return pa.table({"t": pa.array(list(d), pa.binary()), "c": pa.array(list(d.values()), pa.int64())})


def test_extend_keeps_base_ids_and_appends_by_count_then_token():
    base = [b"b", b"a"]
    table = _counts({b"a": 1, b"x": 5, b"y": 5, b"z": 9, b"rare": 1, b"b": 100})
    tokens, growth = extend(base, table, frequency_threshold=2, top_k=None)
    assert tokens == [b"b", b"a", b"z", b"y", b"x"]  # count desc, then token desc (TFT's order)
    assert (growth.base, growth.gained, growth.capped) == (2, 3, False)
    capped, growth = extend(base, table, frequency_threshold=2, top_k=4)
    assert capped == [b"b", b"a", b"z", b"y"] and growth.capped
    full, growth = extend([b"a", b"b", b"c"], table, frequency_threshold=1, top_k=2)  # base over top_k: kept
    assert full == [b"a", b"b", b"c"] and growth.gained == 0
    assert extend_global([b"C1=a", b"C1=__oov0__"], ["C1", "C2"], [[b"z"], [b"q"]]) == [
        b"C1=a", b"C1=__oov0__", b"C1=z", b"C2=q"]


def test_summary_is_exact_when_small_and_close_when_compacted():
    rng = np.random.default_rng(0)
    small = rng.normal(size=1000)
    s = Summary.empty().add(small[:400]).add(small[400:])
    ordered = np.sort(small)
    expected = [float(np.float32(ordered[int(np.ceil(i * 1000 / 4)) - 1])) for i in (1, 2, 3)]
    assert s.boundaries(4) == expected  # the data value at cumulative weight i/4
    big = rng.exponential(size=50 * SUMMARY_POINTS)
    days = [Summary.empty().add(part) for part in np.array_split(big, 7)]
    merged = Summary.empty()
    for d in days:
        merged = merged.add(d.values, d.weights)
    ranks = np.searchsorted(np.sort(big), merged.boundaries(10)) / len(big)
    np.testing.assert_allclose(ranks, np.arange(1, 10) / 10, atol=2e-3)


def test_numpy_tokens_and_values_mirror_the_transform():
    schema = loads_schema("""
name: t
format: {type: csv, header: true}
columns:
  - {name: x, role: numeric, log1p: true, clip: [-1.0, 2.0], bucketize: {num_buckets: 4}}
  - {name: c, role: categorical, vocabulary: {}}
  - {name: tags, role: categorical, vocabulary: {}, multivalent: {delimiter: "|"}}
  - {name: y, role: label, positive: ["1"]}
""", "t.yaml")
    x = numeric_value(np.array([np.nan, -5.0, 0.5, 100.0], np.float32), schema.column("x"))
    np.testing.assert_array_equal(np.isnan(x), [True, False, False, False])
    np.testing.assert_allclose(x[1:], [-1.0, np.log1p(0.5), 2.0], rtol=1e-6)
    assert tokens(pa.array(["a", "", None]), schema.column("c")).to_pylist() == [b"a", b"__missing__",
                                                                                 b"__missing__"]
    assert tokens(pa.array([" a | b|", "", "|"]), schema.column("tags")).to_pylist() == [
        b"a", b"b", b"__missing__", b"__missing__"]


def test_gate_decision_and_tolerance():
    from ctrflow.model.promotion import decide

    assert decide({"auc": 0.70}, {"auc": 0.705}, 0.01)["promote"] is True
    assert decide({"auc": 0.70}, {"auc": 0.72}, 0.01)["promote"] is False
    assert decide({"auc": 0.70}, {"auc": 0.69}, -0.005)["promote"] is True  # must gain 0.005: it gained 0.01


def test_monitor_rules_parse_and_fail_clearly():
    from ctrflow.cli.monitor import Rule, parse_rules

    assert parse_rules("auc<0.7, psi>0.2") == [Rule("auc", "<", 0.7), Rule("psi", ">", 0.2)]
    assert Rule("auc", "<", 0.7).broken(0.69) and not Rule("auc", "<", 0.7).broken(None)
    for bad in ("auc=0.7", "speed<1", "auc<x"):
        with pytest.raises(ValueError, match="--fail-on"):
            parse_rules(bad)
