"""benchmarks/quality_cv.py's fold assignment: K folds partition the pooled rows exactly (no training here)."""
from __future__ import annotations

import math
import zlib
from collections import Counter

import numpy as np
import pytest

from benchmarks import quality_cv
from benchmarks.report import update_section

N, K = 3000, 5


@pytest.fixture
def two_files(tmp_path):
    """A header, a comment line and a blank line in each of two CSV files; rows r0..r2999 with a duplicate."""
    rng = np.random.default_rng(7)
    rows = [f"{i},{rng.integers(0, 2)},{rng.normal():.6f},city{rng.integers(0, 30)}" for i in range(N)]
    rows[10] = rows[11]  # a duplicated row: both copies must land in the same fold
    paths = []
    for j, part in enumerate((rows[:1200], rows[1200:])):
        path = tmp_path / f"part{j}.csv"
        path.write_text("id,label,x,city\n# a comment\n" + "\n".join(part[:5]) + "\n\n" + "\n".join(part[5:]) + "\n")
        paths.append(str(path))
    return paths, rows


def test_pool_rows_keeps_every_data_row_once(two_files):
    paths, rows = two_files
    pooled = quality_cv.pool_rows(paths, header=True, comment="#")
    assert pooled.prefix == (b"id,label,x,city",)
    assert [r.decode() for r in pooled.rows] == rows
    assert pooled.not_rows == 4  # one comment and one blank line per file


def test_folds_partition_the_rows_exactly(two_files):
    paths, rows = two_files
    pooled = quality_cv.pool_rows(paths, header=True, comment="#")
    expected = [zlib.crc32(r.encode()) % K for r in rows]  # independent: crc32 of each line's text
    assert quality_cv.assign_folds(pooled.rows, K).tolist() == expected
    everything = Counter(pooled.rows)
    seen_in_eval: Counter = Counter()
    for k in range(K):
        train, evals = quality_cv.fold_split(pooled.rows, K, k)
        assert Counter(train) + Counter(evals) == everything  # train and eval of a fold: all rows, none twice
        assert not set(train) & set(evals)  # no row (nor a duplicate of it) on both sides
        assert [r.decode() for r in evals] == [r for r, f in zip(rows, expected) if f == k]  # input order kept
        seen_in_eval.update(evals)
        # a fold's size is Binomial(N, 1/K): within 4 standard errors of N/K
        assert abs(len(evals) - N / K) <= 4 * math.sqrt(N * (1 / K) * (1 - 1 / K)), (k, len(evals))
    assert seen_in_eval == everything  # every row in exactly one eval fold


def test_write_fold_files_carry_the_header(two_files, tmp_path):
    paths, rows = two_files
    pooled = quality_cv.pool_rows(paths, header=True, comment="#")
    (train,), (evals,) = quality_cv.write_fold(pooled, K, 2, str(tmp_path / "fold2"), ".csv")
    train_lines = open(train).read().splitlines()
    eval_lines = open(evals).read().splitlines()
    assert train_lines[0] == eval_lines[0] == "id,label,x,city"
    assert sorted(train_lines[1:] + eval_lines[1:]) == sorted(rows)
    assert eval_lines[1:] == [r for r in rows if zlib.crc32(r.encode()) % K == 2]


def test_bad_inputs_stop_with_the_file(tmp_path):
    a, b = tmp_path / "a.csv", tmp_path / "b.csv"
    a.write_text("id,x\n1,2\n")
    b.write_text("id,y\n1,2\n")
    with pytest.raises(ValueError, match="b.csv: header"):
        quality_cv.pool_rows([str(a), str(b)], header=True)
    b.write_text('id,x\n1,"two\nlines"\n')
    with pytest.raises(ValueError, match="b.csv:2: a quoted field spans lines"):
        quality_cv.pool_rows([str(a), str(b)], header=True, quoting=True)
    with pytest.raises(ValueError, match="fold 5 is outside 0..4"):
        quality_cv.fold_split([b"x"], 5, 5)


def test_paired_difference_and_verdict():
    d = quality_cv.paired_difference([0.71, 0.72, 0.70, 0.73], [0.70, 0.70, 0.71, 0.70], eval_over_train=1 / 3)
    diffs = np.array([0.01, 0.02, -0.01, 0.03])
    assert d["mean"] == pytest.approx(diffs.mean())
    assert d["se"] == pytest.approx(diffs.std(ddof=1) / 2)
    assert d["se_corrected"] == pytest.approx(diffs.std(ddof=1) * math.sqrt(1 / 4 + 1 / 3))
    # t(0.975, 4 degrees of freedom) = 2.776: half-widths 0.0028, 0.0028 and 0.0278
    assert quality_cv.verdict({"mean": 0.001, "se_corrected": 0.001, "folds": 5}).startswith("yes (95% interval "
                                                                                            "-0.0018 .. +0.0038)")
    assert quality_cv.verdict({"mean": -0.006, "se_corrected": 0.001, "folds": 5}).startswith("no")
    assert quality_cv.verdict({"mean": 0.001, "se_corrected": 0.01, "folds": 5}).startswith("undecided")
    assert quality_cv.verdict({"mean": 0.001, "se_corrected": float("nan"), "folds": 1}) == "undecided (one fold)"


def test_update_section_places_a_new_section_after_another(tmp_path):
    md = tmp_path / "B.md"
    md.write_text("# t\n\n<!-- BEGIN quality -->\nq\n<!-- END quality -->\n\n"
                  "<!-- BEGIN later -->\nl\n<!-- END later -->\n")
    update_section("quality-cv", "cv", path=str(md), after="quality")
    text = md.read_text()
    assert text.index("<!-- END quality -->") < text.index("<!-- BEGIN quality-cv -->") < text.index(
        "<!-- BEGIN later -->")
    update_section("quality-cv", "cv2", path=str(md), after="quality")  # replaced in place, not moved or doubled
    assert md.read_text() == text.replace("\ncv\n", "\ncv2\n")
