"""Reading files: byte ranges cover every line exactly once; headers, comments, bad rows."""
import pytest

from ctrflow.beam_jobs.input.plan import InputError, plan_reads, read_task
from ctrflow.pipeline.parsing import BatchParser
from ctrflow.schemas import loads_schema

SCHEMA_TEXT = """
format: {type: csv, header: HEADER, comment: "#"}
columns:
  - {name: id, role: id}
  - {name: x, role: numeric, scale: zscore}
  - {name: c, role: categorical, hash: 10}
"""


def _schema(header: bool):
    return loads_schema(SCHEMA_TEXT.replace("HEADER", str(header).lower()), "s.yaml")


def _read_all(schema, tasks, columns):
    ids, bad = [], []
    for task in tasks:
        for table, rejected in read_task(schema, task, columns, batch_rows=7):
            ids += table.column("id").to_pylist()
            bad += rejected
    return ids, bad


@pytest.mark.parametrize("range_bytes", [1, 5, 17, 64, 10_000])
def test_byte_ranges_read_every_line_exactly_once(tmp_path, range_bytes):
    lines = [f"{i},{i * 0.5},{'c' * (i % 7)}" for i in range(200)]
    path = tmp_path / "data.csv"
    path.write_text("id,x,c\n" + "# a comment line\n" + "\n".join(lines) + "\n")
    schema = _schema(header=True)
    tasks, files = plan_reads(schema, [str(path)], ["id", "x", "c"], range_bytes=range_bytes)
    assert files == [str(path)]
    assert len(tasks) > 1 or range_bytes == 10_000
    ids, bad = _read_all(schema, tasks, ["id", "x", "c"])
    assert ids == [str(i) for i in range(200)] and bad == []


def test_rows_with_wrong_field_count_are_rejected_not_lost(tmp_path):
    path = tmp_path / "d.csv"
    path.write_text("1,2.0,a\n2,3.0\n3,4.0,b,extra\n4,5.0,c\n")
    schema = _schema(header=False)
    tasks, _ = plan_reads(schema, [str(path)], ["id", "x", "c"])
    ids, bad = _read_all(schema, tasks, ["id", "x", "c"])
    assert ids == ["1", "4"]
    assert [(b.row, b.reason) for b in bad] == [("2,3.0", "expected 3 fields, got 2"),
                                                ("3,4.0,b,extra", "expected 3 fields, got 4")]


def test_missing_header_column_names_file_and_column(tmp_path):
    path = tmp_path / "d.csv"
    path.write_text("id,c\n1,a\n")
    with pytest.raises(InputError) as err:
        plan_reads(_schema(header=True), [str(path)], ["id", "x", "c"])
    assert str(err.value).startswith(f"input {path}: column 'x' required by schema s.yaml is missing")


def test_pattern_matching_nothing_is_an_error(tmp_path):
    with pytest.raises(InputError, match="no file matches"):
        plan_reads(_schema(False), [str(tmp_path / "nope-*.csv")], ["id"])


def test_census_quirks_are_handled():
    """adult.test: a junk first line (comment '|'), ', ' separators, trailing empty line, '?' missing."""
    import os

    from ctrflow.schemas import load_schema
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    schema = load_schema(os.path.join(root, "schemas", "census.yaml"))
    parser = BatchParser(schema, with_label=True, keys=False)
    tasks, _ = plan_reads(schema, [os.path.join(root, "data", "census", "adult.test")], parser.required_columns)
    rows, labels, missing_workclass = 0, 0.0, 0
    for table, bad in read_task(schema, tasks[0], parser.required_columns):
        assert bad == []
        res = parser.parse(table, "adult.test")
        assert res.rejected == []
        rows += res.batch.num_rows
        labels += sum(res.batch.column("income_bracket").to_pylist())
        missing_workclass += res.batch.column("workclass").to_pylist().count("")
    # figures from shared/data/census/README.md: 16,281 rows, 3,846 positive
    assert rows == 16281 and labels == 3846
    import pandas as pd
    df = pd.read_csv(os.path.join(root, "data", "census", "adult.test"), skiprows=1, header=None,
                     skipinitialspace=True)
    assert missing_workclass == int((df[1] == "?").sum())


@pytest.mark.parametrize("block", [1, 3, 64])
def test_byte_ranges_reassemble_the_file_line_by_line(tmp_path, monkeypatch, block):
    """Every line is read by exactly one range (the one it starts in), whatever the cuts and read block size."""
    import random

    from ctrflow.beam_jobs.input import readers
    from ctrflow.beam_jobs.input.plan import ReadTask

    monkeypatch.setattr(readers, "_BLOCK", block)
    rng = random.Random(block)
    for trial in range(20):
        lines = [b"x" * rng.randint(0, 40) for _ in range(rng.randint(1, 30))]
        data = b"\n".join(lines) + (b"\n" if trial % 2 else b"")
        path = tmp_path / f"f{trial}.txt"
        path.write_bytes(data)
        cuts = sorted({0, len(data), *(rng.randint(0, len(data)) for _ in range(4))})
        parts = [readers._read_range(ReadTask(path=str(path), start=a, end=b)) for a, b in zip(cuts, cuts[1:])]
        assert b"".join(p[1] for p in parts) == data, cuts
        for offset, chunk in parts:
            if chunk:  # a range's bytes start at a line start, at its offset in the file
                assert data[offset:offset + len(chunk)] == chunk and (offset == 0 or data[offset - 1:offset] == b"\n")
