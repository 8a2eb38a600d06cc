"""Bad bytes and non-finite numbers are rejected rows (not failed jobs), rows carry their file offset,
and the output location check looks at what the input patterns can match (issue 10, points 1, 2, 3, 8)."""
from __future__ import annotations

import gzip

import numpy as np
import pyarrow as pa
import pytest

from ctrflow.beam_jobs.input.plan import plan_reads
from ctrflow.beam_jobs.input.readers import read_task
from ctrflow.pipeline.parsing import OFFSET_COLUMN, BatchParser
from ctrflow.schemas import SchemaError, loads_schema

SCHEMA = """
name: t
format: {type: csv, header: true, null_markers: ["", "?"], max_field_bytes: 40 ENCODING}
columns:
  - {name: k, role: passthrough}
  - {name: x, role: numeric, scale: zscore}
  - {name: c, role: categorical, hash: 7}
"""
COLUMNS = ["k", "x", "c"]


def _schema(encoding: str = ""):
    return loads_schema(SCHEMA.replace("ENCODING", f", encoding: {encoding}" if encoding else ""), "t.yaml")


def _read(schema, path, range_bytes=64 << 20):
    tasks, _ = plan_reads(schema, [str(path)], COLUMNS, range_bytes=range_bytes)
    tables, bad = [], []
    for task in tasks:
        for table, rejected in read_task(schema, task, COLUMNS, batch_rows=3):
            tables.append(table)
            bad += rejected
    table = pa.concat_tables(tables) if tables else None
    return table, bad


def _line_starts(data: bytes) -> list[int]:
    """Independent: offsets of every line of the file."""
    starts, pos = [], 0
    for line in data.splitlines(keepends=True):
        starts.append(pos)
        pos += len(line)
    return starts


def test_bad_bytes_are_rejected_rows_with_reason_and_escaped_bytes(tmp_path):
    lines = [b"k,x,c", b"r1,1.5,a", b"r2,2.5,caf\xe9", b"r3,3\x00,b", b"r4,4," + b"z" * 41,
             b'r5,5,"open', b"r6,6,b"]
    data = b"\n".join(lines) + b"\n"
    (tmp_path / "d.csv").write_bytes(data)
    table, bad = _read(_schema(), tmp_path / "d.csv")
    starts = _line_starts(data)
    assert table.column("k").to_pylist() == ["r1", "r6"]
    assert table.column(OFFSET_COLUMN).to_pylist() == [starts[1], starts[6]]
    assert [(b.row, b.reason, b.offset) for b in bad] == [
        ("r2,2.5,caf\\xe9", "not valid utf-8: byte 0xe9 at position 10", starts[2]),
        ("r3,3\\x00,b", "NUL byte at position 4", starts[3]),
        ("r4,4," + "z" * 41, "field 3 is 41 bytes, over the schema's max_field_bytes 40", starts[4]),
        ('r5,5,"open', "unterminated quote", starts[5]),
    ]


def test_declared_encoding_is_decoded_and_bom_crlf_gzip_are_read(tmp_path):
    text = "k,x,c\r\nr1,1,café\r\nr2,2,Zürich\r\n"
    (tmp_path / "l.csv").write_bytes(text.encode("latin-1"))
    table, bad = _read(_schema("latin-1"), tmp_path / "l.csv")
    assert bad == [] and table.column("c").to_pylist() == ["café", "Zürich"]
    raw = b"\xef\xbb\xbf" + text.encode("utf-8")
    (tmp_path / "b.csv.gz").write_bytes(gzip.compress(raw))
    table, bad = _read(_schema(), tmp_path / "b.csv.gz")
    assert bad == [] and table.column("k").to_pylist() == ["r1", "r2"]
    assert table.column("c").to_pylist() == ["café", "Zürich"]
    assert table.column(OFFSET_COLUMN).to_pylist() == _line_starts(raw)[1:]  # offsets in the decompressed bytes
    with pytest.raises(SchemaError, match="encoding must name a Python codec"):
        _schema("klingon")


@pytest.mark.parametrize("range_bytes", [1, 9, 50, 1 << 20])
def test_every_row_has_a_unique_offset_across_byte_ranges(tmp_path, range_bytes):
    rows = [f"r{i},{i},c{i % 5}" for i in range(60)]
    data = ("k,x,c\n" + "\n".join(rows)).encode()  # no trailing newline
    (tmp_path / "d.csv").write_bytes(data)
    table, bad = _read(_schema(), tmp_path / "d.csv", range_bytes=range_bytes)
    assert bad == [] and table.column("k").to_pylist() == [f"r{i}" for i in range(60)]
    assert table.column(OFFSET_COLUMN).to_pylist() == _line_starts(data)[1:]


def test_non_finite_numbers_are_rejected_unless_a_null_marker():
    schema = loads_schema(SCHEMA.replace("ENCODING", "").replace('"?"]', '"?", "nan"]'), "t.yaml")
    parser = BatchParser(schema, with_label=False, keys=True, locator=True)
    values = ["1", "inf", "-inf", "1e400", "nan", "NaN", "?", "3e38", "4e38"]
    table = pa.table({"k": [str(i) for i in range(len(values))], "x": values, "c": ["a"] * len(values),
                      OFFSET_COLUMN: pa.array(range(0, 10 * len(values), 10), pa.int64())})
    out = parser.parse(table, "f.csv")
    assert [(r.offset, r.reason) for r in out.rejected] == [
        (10, "column 'x': 'inf' is not a finite number"), (20, "column 'x': '-inf' is not a finite number"),
        (30, "column 'x': '1e400' is not a finite number"), (50, "column 'x': 'NaN' is not a finite number"),
        (80, "column 'x': '4e38' is not a finite number")]  # over float32's max
    assert out.batch.column("k").to_pylist() == ["0", "4", "6", "7"]  # "nan" and "?" are null markers here
    np.testing.assert_array_equal(out.batch.column("x").to_numpy(), np.float32([1, np.nan, np.nan, 3e38]))
    assert out.batch.column("source_file").to_pylist() == ["f.csv"] * 4
    assert out.batch.column("source_offset").to_pylist() == [0, 40, 60, 70]
    typed = parser.parse(pa.table({"k": ["a", "b", "c"], "x": pa.array([1.0, float("inf"), float("nan")]),
                                   "c": ["a", "b", "c"]}), "f.parquet")
    assert [r.reason for r in typed.rejected] == ["column 'x': inf is not a finite number"]  # a typed NaN: missing


def test_output_location_compares_with_what_the_patterns_can_match(tmp_path):
    from ctrflow.beam_jobs.input.globs import check_output_location
    day = tmp_path / "in"
    model = str(tmp_path / "model")
    check_output_location(str(day / "scores"), [str(day / "day.csv")], model)  # beside one input file
    check_output_location(str(day / "scores"), [str(day / "*.csv")], model)  # files can't match in a folder
    check_output_location(str(day / "scores"), [str(day / "day-*" / "part.csv")], model)
    for pattern in (day / "*" / "*.csv", day / "**", day / "{date}" / "x.csv", day / "sc*"):
        with pytest.raises(ValueError, match="could match files written there"):
            check_output_location(str(day / "scores"), [str(pattern)], model)
    with pytest.raises(ValueError, match="contains the input location"):
        check_output_location(str(tmp_path), [str(day / "day.csv")], model)
    with pytest.raises(ValueError, match="overlaps the model directory"):
        check_output_location(model + "/scores", [str(day / "day.csv")], model)
