"""The fused vocabulary combiner against collections.Counter, including its compaction path."""
from __future__ import annotations

import collections

import numpy as np

from ctrflow.pipeline import analyzers
from ctrflow.pipeline.analyzers import VocabSpec, _CountTokens, order_vocabulary


def _batch(rng, n: int, cardinality: int) -> tuple[list[bytes], list[bytes]]:
    return ([f"a{v}".encode() for v in rng.zipf(1.3, n) % cardinality],
            [f"b{v}".encode() for v in rng.integers(0, 5, n)])


def _input(columns: tuple[list[bytes], ...]):
    """What the combiner receives per batch: the graph's (uniques, counts) per column, made Arrow per batch."""
    out = []
    for tokens in columns:
        uniques, counts = np.unique(np.array(tokens, dtype=object), return_counts=True)
        out += [uniques, counts]
    return analyzers.batch_to_arrow(out)


def test_counts_merge_and_compaction_equal_counter(monkeypatch):
    monkeypatch.setattr(analyzers, "_COMPACT_ROWS", 50)  # compact often
    rng = np.random.default_rng(0)
    fn = _CountTokens(2)
    expected = [collections.Counter(), collections.Counter()]
    accumulators = []
    for part in range(3):  # three bundles, merged at the end
        acc = fn.create_accumulator()
        for _ in range(20):
            batch = _batch(rng, 200, 400)
            for counter, tokens in zip(expected, batch):
                counter.update(tokens)
            acc = fn.add_input(acc, _input(batch))
        accumulators.append(acc)
    tables = fn.extract_output(fn.merge_accumulators(accumulators))
    for table, counter in zip(tables, expected):
        got = dict(zip(table.column("t").to_pylist(), table.column("c").to_pylist()))
        assert got == dict(counter)


def test_order_is_count_desc_then_token_desc_with_threshold_and_top_k():
    fn = _CountTokens(1)
    tokens = [b"x"] * 3 + [b"b"] * 5 + [b"a"] * 5 + [b"c"] * 5 + [b"z"] * 1
    table = fn.extract_output(fn.add_input(fn.create_accumulator(), _input((tokens,))))[0]
    assert order_vocabulary(table, VocabSpec("v")) == [b"c", b"b", b"a", b"x", b"z"]
    assert order_vocabulary(table, VocabSpec("v", top_k=2)) == [b"c", b"b"]
    assert order_vocabulary(table, VocabSpec("v", frequency_threshold=3)) == [b"c", b"b", b"a", b"x"]
