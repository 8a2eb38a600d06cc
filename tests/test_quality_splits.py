"""benchmarks/quality.py's time-ordered cuts: eval is the latest rows, validation the latest rows before it."""
from __future__ import annotations

import os

import pytest

from benchmarks import quality


def test_cut_ordered_takes_the_last_rows_for_eval_then_valid() -> None:
    rows = [f"r{i}" for i in range(100)]
    train, valid, evals = quality.cut_ordered(rows)
    assert evals == rows[80:]  # the last 20%
    assert valid == rows[72:80]  # the last 10% of the 80 rows before eval
    assert train == rows[:72]
    train, valid, evals = quality.cut_ordered(rows, None)  # eval file given: only validation is cut
    assert (train, valid, evals) == (rows[:90], rows[90:], [])


def test_cut_ordered_keeps_every_row_once() -> None:
    rows = [str(i) for i in range(37)]
    train, valid, evals = quality.cut_ordered(rows, 0.3, 0.15)
    assert train + valid + evals == rows
    assert (len(evals), len(valid)) == (round(37 * 0.3), round(26 * 0.15))


def test_movielens_time_split_evaluates_the_latest_ratings(tmp_path) -> None:
    if not os.path.exists(os.path.join(quality.SHARED, "movielens", "ml-100k")):
        pytest.skip("shared MovieLens data is absent")
    ratings = quality._movielens_rows()
    train, valid, evals = quality.DATASETS["movielens"].ordered(str(tmp_path))
    lines = {}
    for name, files in (("train", train), ("valid", valid), ("eval", evals)):
        [path] = files
        with open(path) as f:
            header, *lines[name] = f.read().splitlines()
        assert header == quality.MOVIELENS_HEADER
    assert [len(lines[s]) for s in ("train", "valid", "eval")] == [72_000, 8_000, 20_000]
    stamp = {line: t for t, _, _, line in ratings}  # joined lines are unique per (user, item)
    assert len(stamp) == 100_000
    assert max(stamp[x] for x in lines["train"]) <= min(stamp[x] for x in lines["valid"])
    assert max(stamp[x] for x in lines["valid"]) <= min(stamp[x] for x in lines["eval"])
    expected = sorted(t for t, *_ in ratings)  # an independent cut of the timestamps
    assert sorted(stamp[x] for x in lines["eval"]) == expected[80_000:]
