"""Every implementation of the raw-value rules (``schemas.raw_rules``) gives the golden table's answers.

Implementations: ``BatchParser`` (Arrow; each value alone, which takes the
cast fast path, and all in one batch, which takes the pattern path), the
exported text signatures' ``raw_values.normalize`` and ``parse_examples``
(TensorFlow), and the tokens of ``transform.categorical_tokens`` (TensorFlow,
what preprocessing and serving look up) and ``analysis_cache.tokens`` (Arrow,
what the per-day analysis counts).
"""
from __future__ import annotations

import collections
import math

import numpy as np
import pyarrow as pa
import pytest
import tensorflow as tf

from ctrflow.beam_jobs.preprocess import analysis_cache
from ctrflow.pipeline import raw_values, transform
from ctrflow.pipeline.parsing import OFFSET_COLUMN, BatchParser
from ctrflow.schemas import MISSING_TOKEN, Schema, loads_schema
from tests.raw_value_cases import (
    MISSING,
    MULTIVALENT,
    NOT_A_NUMBER,
    NOT_FINITE,
    NULL_MARKERS,
    STRIPPED,
    UNSTRIPPED,
    Case,
    nearest_float32,
)

REJECTED = "<rejected>"  # what serving can tell: the request fails, for either reason


def schema(strip: bool) -> Schema:
    markers = ", ".join(f'"{m}"' for m in NULL_MARKERS)
    return loads_schema(f"""
name: golden
format: {{type: csv, null_markers: [{markers}], strip: {str(strip).lower()}}}
columns:
  - {{name: n, role: numeric, log1p: true, clip: [-30.0, 80.0], scale: zscore}}
  - {{name: c, role: categorical, hash: {{buckets: 7}}}}
  - {{name: m, role: categorical, hash: {{buckets: 7}}, multivalent: {{delimiter: "|"}}}}
""")


def _number(value: float) -> tuple:
    return ("value", np.float32(value).tobytes().hex())  # the exact float32, -0.0 and 0.0 apart


def expected_numeric(c: Case, serving: bool = False) -> tuple:
    if c.numeric == MISSING:
        return (MISSING,)
    if c.numeric in (NOT_A_NUMBER, NOT_FINITE):
        return (REJECTED if serving else c.numeric,)
    return _number(c.numeric)


def _numeric_result(value) -> tuple:
    return (MISSING,) if math.isnan(value) else _number(value)


# ---------------------------------------------------------------- implementations

def arrow_numeric(s: Schema, raws: list[str]) -> list[tuple]:
    """BatchParser over one batch of ``raws`` (numeric column ``n``)."""
    n = len(raws)
    table = pa.table({"n": raws, "c": ["x"] * n, "m": ["x"] * n, OFFSET_COLUMN: list(range(n))})
    result = BatchParser(s, with_label=False, keys=False).parse(table, "golden")
    reasons = {r.offset: r.reason for r in result.rejected}
    values = iter(result.batch.column("n").to_pylist())
    out = []
    for i in range(n):
        if i not in reasons:
            out.append(_numeric_result(next(values)))
        elif reasons[i].endswith("is not a finite number"):
            out.append((NOT_FINITE,))
        else:
            assert reasons[i].startswith("column 'n': cannot parse ") and reasons[i].endswith(" as a number")
            out.append((NOT_A_NUMBER,))
    return out


def arrow_clean(s: Schema, column: str, raws: list[str]) -> list[str]:
    """BatchParser's clean values of categorical ``column``."""
    n = len(raws)
    table = pa.table({"n": ["1"] * n, "c": ["x"] * n, "m": ["x"] * n, column: raws})
    result = BatchParser(s, with_label=False, keys=False).parse(table, "golden")
    assert result.rejected == []
    return result.batch.column(column).to_pylist()


def serving_text(s: Schema, raws: list[str], absent: bool = False) -> tuple[list[tuple], list[str]]:
    """``raw_values.normalize`` of one batch: (numeric results, categorical values); fails for a rejected one."""
    text = {name: tf.constant(raws) for name in ("n", "c", "m")}
    out = raw_values.normalize(s, text)
    return [_numeric_result(v) for v in out["n"].numpy()], [v.decode() for v in out["c"].numpy()]


def serving_examples(s: Schema, raws: list[str]) -> tuple[list[tuple], list[str]]:
    """``raw_values.parse_examples`` of one batch of tf.Examples holding each value as bytes."""
    examples = [tf.train.Example(features=tf.train.Features(feature={
        name: tf.train.Feature(bytes_list=tf.train.BytesList(value=[raw.encode()])) for name in ("n", "c", "m")
    })).SerializeToString() for raw in raws]
    out = raw_values.parse_examples(s, tf.constant(examples))
    return [_numeric_result(v) for v in out["n"].numpy()], [v.decode() for v in out["c"].numpy()]


def serving_numeric_one(fn, s: Schema, raw: str) -> tuple:
    """One value through a serving function: its numeric result, or REJECTED when the call fails."""
    try:
        return fn(s, [raw])[0][0]
    except tf.errors.InvalidArgumentError as e:
        assert "not a finite number in column(s)" in e.message and "b'n'" in e.message
        return (REJECTED,)


SERVING = {"text": serving_text, "tf.Example": serving_examples}


# ---------------------------------------------------------------- the table itself

@pytest.mark.parametrize("c", [c for c in STRIPPED + UNSTRIPPED if isinstance(c.numeric, float)],
                         ids=lambda c: repr(c.raw)[:40])
def test_the_tables_numbers_are_the_nearest_float32s(c: Case) -> None:
    """Each written-out value is the float32 nearest to the text, by exact arithmetic (not through float64)."""
    assert _number(nearest_float32(c.raw)) == _number(c.numeric)


def test_the_table_holds_the_cases_the_rules_name() -> None:
    raws = {c.raw for c in STRIPPED}
    for raw in ("inf", "-inf", "nan", "1e400", "-0", "+5", ".5", "5.", "0x10", "1_000", "", "   ", "\ufeff5",
                "\u0663", "\uff15", "1" * 40):
        assert raw in raws
    assert {c.numeric for c in STRIPPED} >= {MISSING, NOT_A_NUMBER, NOT_FINITE}


# ---------------------------------------------------------------- numeric and categorical values

@pytest.mark.parametrize("strip, cases", [(True, STRIPPED), (False, UNSTRIPPED)], ids=["strip", "no strip"])
def test_batch_parser(strip: bool, cases: tuple[Case, ...]) -> None:
    """Arrow: each value alone (the cast fast path) and all in one batch (the pattern path) agree with the table."""
    s, raws = schema(strip), [c.raw for c in cases]
    expected = [expected_numeric(c) for c in cases]
    assert [arrow_numeric(s, [r])[0] for r in raws] == expected
    assert arrow_numeric(s, raws) == expected
    assert arrow_clean(s, "c", raws) == ["" if c.categorical == MISSING else c.categorical for c in cases]


@pytest.mark.parametrize("path", list(SERVING))
@pytest.mark.parametrize("strip, cases", [(True, STRIPPED), (False, UNSTRIPPED)], ids=["strip", "no strip"])
def test_serving_signatures(path: str, strip: bool, cases: tuple[Case, ...]) -> None:
    """TensorFlow: a rejected value fails the request; the others, one by one and batched, are the table's."""
    s, fn = schema(strip), SERVING[path]
    assert [serving_numeric_one(fn, s, c.raw) for c in cases] == [expected_numeric(c, serving=True) for c in cases]
    kept = [c for c in cases if c.numeric not in (NOT_A_NUMBER, NOT_FINITE)]
    numeric, categorical = fn(s, [c.raw for c in kept])
    assert numeric == [expected_numeric(c) for c in kept]
    assert categorical == ["" if c.categorical == MISSING else c.categorical for c in kept]
    # every categorical value, the rejected numbers' too (with a valid number beside them)
    text_only = raw_values.normalize(s, {"n": tf.constant(["1"] * len(cases)),
                                         "c": tf.constant([c.raw for c in cases]),
                                         "m": tf.constant(["x"] * len(cases))})
    assert [v.decode() for v in text_only["c"].numpy()] == [
        "" if c.categorical == MISSING else c.categorical for c in cases]


def test_a_feature_absent_from_a_tf_example_is_missing() -> None:
    s = schema(True)
    example = tf.train.Example(features=tf.train.Features(feature={
        "m": tf.train.Feature(bytes_list=tf.train.BytesList(value=[b"a"]))})).SerializeToString()
    out = raw_values.parse_examples(s, tf.constant([example]))
    assert math.isnan(out["n"].numpy()[0]) and out["c"].numpy()[0] == b""


# ---------------------------------------------------------------- tokens

def _token(value: str) -> bytes:
    return (MISSING_TOKEN if value == MISSING else value).encode()


def test_single_valued_tokens_of_every_path() -> None:
    """The clean value's token: the transform's (TF, on Arrow's and on serving's clean values) and the analysis'."""
    s = schema(True)
    col = s.column("c")
    raws = [c.raw for c in STRIPPED]
    expected = [_token(c.categorical) for c in STRIPPED]
    batch_clean = arrow_clean(s, "c", raws)
    served = raw_values.normalize(s, {"n": tf.constant(["1"] * len(raws)), "c": tf.constant(raws),
                                      "m": tf.constant(["x"] * len(raws))})["c"]
    assert transform.categorical_tokens(tf.constant(batch_clean), col).numpy().tolist() == expected
    assert transform.categorical_tokens(served, col).numpy().tolist() == expected
    assert analysis_cache.tokens(pa.array(batch_clean), col).to_pylist() == expected


def test_multivalent_tokens_of_every_path() -> None:
    """Per row: the transform's ragged tokens (from Arrow's and serving's clean values) and the analysis' tokens."""
    s = schema(True)
    col = s.column("m")
    raws = [raw for raw, _ in MULTIVALENT]
    expected = [[_token(t) for t in tokens] for _, tokens in MULTIVALENT]
    batch_clean = arrow_clean(s, "m", raws)
    served = raw_values.normalize(s, {"n": tf.constant(["1"] * len(raws)), "c": tf.constant(["x"] * len(raws)),
                                      "m": tf.constant(raws)})["m"]
    assert transform.categorical_tokens(tf.constant(batch_clean), col).to_list() == expected
    assert transform.categorical_tokens(served, col).to_list() == expected
    assert [analysis_cache.tokens(pa.array([v]), col).to_pylist() for v in batch_clean] == expected
    flat = analysis_cache.tokens(pa.array(batch_clean), col).to_pylist()
    assert flat == [t for row in expected for t in row]  # rows in order, in one call


# ---------------------------------------------------------------- numeric values the transform computes

def test_analysis_values_are_the_transforms() -> None:
    """The per-day analysis' log1p/clip values equal the transform graph's bit for bit.

    The values include some whose float32 log1p numpy and TensorFlow round
    differently (a numpy copy of the transform failed here).
    """
    col = schema(True).column("n")
    table = [c.numeric for c in STRIPPED if isinstance(c.numeric, float)]
    x = np.array(table + [1.2573022e22, -0.013210487, 6.4042268e-08, -7037.3525, -92172536.0, np.nan, 1e30],
                 np.float32)
    graph = tf.function(lambda v: transform.numeric_value(v, col))
    expected = graph(tf.constant(x)).numpy()
    got = analysis_cache.numeric_value(x, col)
    assert got.dtype == np.float32
    assert got.tobytes() == expected.tobytes()
    assert collections.Counter(np.isnan(got)) == collections.Counter(np.isnan(x))
