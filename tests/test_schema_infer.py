"""``ctrflow schema infer``: each rule on a generated table with an exact expectation, then on census end to end."""
from __future__ import annotations

import os
import re

import numpy as np
import pyarrow as pa
import pytest

from ctrflow.schemas import infer, loads_schema
from ctrflow.schemas.infer import InferError, infer_schema, sniff_text, text_table

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CENSUS = os.path.join(ROOT, "data", "census")
CENSUS_NAMES = ("age,workclass,fnlwgt,education,education_num,marital_status,occupation,relationship,race,gender,"
                "capital_gain,capital_loss,hours_per_week,native_country,income")


def _table(**cols) -> pa.Table:
    return pa.table({k: pa.array([str(v) for v in vals], pa.string()) for k, vals in cols.items()})


def _labels(n: int, seed: int = 0) -> list[str]:
    return [str(v) for v in (np.random.default_rng(seed).random(n) < 0.3).astype(int)]


def _infer(table: pa.Table, label: str = "y", **kw) -> infer.Inference:
    return infer_schema(table, label, file_type="csv", name="t", **kw)


def _by_name(result: infer.Inference) -> dict[str, infer.Decision]:
    return {d.name: d for d in result.decisions}


def test_every_column_has_its_reason_on_the_line_above_and_the_text_loads():
    n = 200
    result = _infer(_table(a=list(range(n)), b=[f"v{i % 7}" for i in range(n)], y=_labels(n)))
    lines = result.text.splitlines()
    entries = [i for i, line in enumerate(lines) if line.startswith("  - {name: ")]
    assert len(entries) == 3
    for i in entries:
        name = re.match(r"  - \{name: ([^,]+),", lines[i]).group(1).strip('"')  # "y" is quoted: YAML 1.1 "yes"
        assert lines[i - 1].startswith(f"  # {name}: ")
    assert loads_schema(result.text).columns == result.schema.columns


def test_id_is_the_first_near_unique_non_float_column_and_later_ones_are_ignored():
    n = 100
    result = _infer(_table(rid=range(1000, 1000 + n), uuid=[f"u-{i}" for i in range(n)],
                           x=[f"{0.5 + i * 1.37:.3f}" for i in range(n)], c=[i % 3 for i in range(n)],
                           y=_labels(n)))
    d = _by_name(result)
    assert (d["rid"].role, d["rid"].spec) == ("id", {"dtype": "int64"})
    assert d["uuid"].role == "ignored"  # a second key: not a feature
    assert d["x"].role == "numeric"  # distinct floats are a measurement, not a key
    big = _infer(_table(rid=[str(2**63 + i) for i in range(n)], c=[i % 3 for i in range(n)], y=_labels(n)))
    assert _by_name(big)["rid"].spec == {"dtype": "string"}  # beyond int64


def test_null_markers_seen_in_features_join_the_format_and_numbers_stay_numeric():
    n = 300
    x = [str(i % 50) for i in range(n)]
    x[0], x[1], x[2], x[3], x[4] = "?", "\\N", "unknown", "unknown", "-"
    c = [f"c{i % 5}" for i in range(n)]
    c[5] = "NA"
    y = _labels(n)
    y[7] = "?"  # the label's own values never become markers
    result = _infer(_table(x=x, c=c, y=y))
    assert result.schema.format.null_markers == ("", "-", "?", "NA", "\\N", "unknown")
    assert _by_name(result)["x"].role == "numeric"
    assert "'unknown' in x 2" in result.text


def test_vocabulary_threshold_and_hashing_beyond_vocab_max(monkeypatch):
    rng = np.random.default_rng(1)
    n = 400
    common = [f"a{i % 10}" for i in range(n)]  # 10 values, 40 rows each: every one kept
    tail = [f"t{i}" if i < 80 else f"h{i % 5}" for i in range(n)]  # 85 distinct, 80 seen once
    monkeypatch.setattr(infer, "VOCAB_MAX", 100)
    many = [f"m{v}" for v in rng.integers(0, 150, n)]
    d = _by_name(_infer(_table(common=common, tail=tail, many=many, y=_labels(n))))
    assert d["common"].spec == {"vocabulary": {"num_oov_buckets": 1}}
    assert d["tail"].spec == {"vocabulary": {"frequency_threshold": 5, "num_oov_buckets": 1}}  # mostly rare
    distinct_many = len(set(many))
    assert d["many"].spec == {"hash": {"buckets": 1 << max(10, int(np.ceil(np.log2(2 * distinct_many))))}}


def test_multivalent_by_delimiter_and_not_the_file_delimiter():
    genres = ["Action", "Comedy", "Drama", "War"]
    rng = np.random.default_rng(2)
    n = 300
    values = ["|".join(sorted(set(rng.choice(genres, rng.integers(1, 4))))) for _ in range(n)]
    d = _by_name(_infer(_table(g=values, s=[v.replace("|", ";") for v in values],
                               k=[v.replace("|", ",") for v in values], y=_labels(n))))
    assert d["g"].spec == {"multivalent": {"delimiter": "|"}, "vocabulary": {"num_oov_buckets": 1}}
    assert d["s"].spec["multivalent"] == {"delimiter": ";"}
    assert d["k"].spec["multivalent"] == {"delimiter": ","}  # a comma is a value delimiter when the file's is not
    comma_file = infer.TextLayout(delimiter=",", header=True, names=("g", "y"))
    assert "multivalent" not in _by_name(_infer(_table(g=[v.replace("|", ",") for v in values], y=_labels(n)),
                                                layout=comma_file))["g"].spec


def test_constant_and_empty_columns_are_ignored():
    n = 50
    d = _by_name(_infer(_table(k=["same"] * n, e=[""] * n, x=[i % 13 for i in range(n)], y=_labels(n))))
    assert d["k"].role == "ignored" and "constant" in d["k"].why
    assert d["e"].role == "ignored"


@pytest.mark.parametrize("values, expected", [
    (["yes", "no", "no"], (["yes"], ["no"])),
    (["0", "1", "0", "0"], (["1"], ["0"])),
    (["-1", "1", "-1"], (["1"], ["-1"])),
    ([">50K", "<=50K", "<=50K", ">50K.", "<=50K."], ([">50K", ">50K."], ["<=50K", "<=50K."])),
    (["b", "a", "a", "a"], (["b"], ["a"])),  # no conventional token: the minority
    (["1", "2", "3", "4", "4", "5"], (["4", "5"], ["1", "2", "3"])),  # ratings: from the median up
])
def test_label_classes(values, expected):
    n = len(values) * 20
    result = _infer(_table(x=[i % 11 for i in range(n)], y=values * 20))
    assert tuple(result.decisions[-1].spec.values()) == expected


def test_label_positive_given_and_errors():
    n = 60
    t = _table(x=[i % 11 for i in range(n)], y=["a", "b", "c"] * 20)
    assert _infer(t, positive=["c"]).schema.label.positive_values == ("c",)
    with pytest.raises(InferError, match="give --positive"):
        _infer(t)
    with pytest.raises(InferError, match="1 distinct"):
        _infer(_table(x=range(n), y=["1"] * n))
    with pytest.raises(InferError, match="not a column"):
        _infer(t, label="income")


def test_point_mass_numeric_gets_a_bucket_per_frequent_value_and_log1p():
    rng = np.random.default_rng(3)
    n = 2000
    amounts = rng.choice([7688, 15024, 3103, 5178, 99999] + list(range(100, 2500, 100)), n)
    x = np.where(rng.random(n) < 0.9, 0, amounts)
    d = _by_name(_infer(_table(x=x, y=_labels(n))))["x"]
    assert d.spec == {"log1p": True, "bucketize": {"num_buckets": 5000}, "scale": "zscore"}
    plain = _by_name(_infer(_table(x=rng.integers(17, 90, n), y=_labels(n))))["x"]
    assert plain.spec == {"bucketize": {"num_buckets": 20}, "scale": "zscore"}


def test_integer_codes_are_categorical_and_quantities_numeric():
    rng = np.random.default_rng(4)
    n = 6000
    codes = rng.integers(0, 60, n) * 37 + 15000  # 60 ad-slot codes, each with its own click rate
    rate = rng.choice([0.05, 0.6], 60)[(codes - 15000) // 37]
    y = (rng.random(n) < rate).astype(int)
    few = rng.integers(0, 5, n)
    d = _by_name(_infer(_table(slot=codes, few=few, user_id=rng.integers(0, 300, n), y=y)))
    assert d["slot"].role == "categorical" and "a code" in d["slot"].why
    assert d["few"].role == "categorical" and "only 5 distinct" in d["few"].why
    assert d["user_id"].role == "categorical" and "the name" in d["user_id"].why
    age = rng.integers(18, 90, n)
    smooth = (rng.random(n) < 1 / (1 + np.exp(-(age - 50) / 8))).astype(int)
    assert _by_name(_infer(_table(age=age, y=smooth)))["age"].role == "numeric"
    per_value, buckets, base = infer.code_fit(codes.astype(float), y.astype(float))
    assert per_value < buckets < base
    noise = infer.code_fit(codes.astype(float), rng.integers(0, 2, n).astype(float))
    assert noise[0] > noise[2] * (1 - infer.CODE_GAIN)  # no signal: no better than the base rate


def test_sniff_header_delimiter_comment_and_names():
    body = "".join(f"{i}\tc{i % 3}\t{i % 2}\n" for i in range(50))
    with_header = sniff_text([(b"n\tcity\tclicked\n" + body.encode(), True)])
    assert (with_header.delimiter, with_header.header, with_header.names) == ("\t", True, ("n", "city", "clicked"))
    data = b"39, State-gov, 0\n50, Private, 1\n" * 20
    test = b"|1x3 Cross validator\n" + b"38, Private, 0\n" * 20
    layout = sniff_text([(data, True), (test, True)])
    assert (layout.delimiter, layout.header, layout.comment, layout.names) == (",", False, "|",
                                                                                ("col0", "col1", "col2"))
    named = sniff_text([(data, True), (test, True)], names=["age", "work", "y"])
    table, bad = text_table([(data, True), (test, True)], named, 1000)
    assert table.column_names == ["age", "work", "y"] and table.num_rows == 60 and bad == 0
    assert table.column("work")[0].as_py() == " State-gov"  # stripped by the rules, not the reader
    with pytest.raises(InferError, match="2 column names"):
        sniff_text([(data, True)], names=["a", "b"])
    cut = sniff_text([(b"1,2\n3,4\n5,", False)])  # a head cut mid-line drops the partial line
    assert text_table([(b"1,2\n3,4\n5,", False)], cut, 10)[0].num_rows == 2


def test_census_with_names_gets_the_hand_written_decisions(tmp_path, capsys):
    from ctrflow.cli import schema_infer

    out = tmp_path / "census.yaml"
    result = schema_infer.run(["infer", "--input", os.path.join(CENSUS, "adult.data"), "--input",
                               os.path.join(CENSUS, "adult.test"), "--names", CENSUS_NAMES, "--label", "income",
                               "--output", str(out)])
    schema = result.schema
    assert loads_schema(out.read_text()).columns == schema.columns
    assert schema.format.comment == "|" and schema.format.null_markers == ("", "?") and not schema.format.header
    assert schema.column("age").role == "numeric" and schema.column("age").numeric.bucketize.num_buckets == 20
    assert schema.column("workclass").role == "categorical" and schema.column("native_country").role == "categorical"
    gain = schema.column("capital_gain").numeric
    assert gain.log1p and gain.bucketize.num_buckets == 5000  # point mass, as schemas/census.yaml
    assert schema.label.positive_values == (">50K", ">50K.") and schema.label.negative_values == ("<=50K", "<=50K.")
    printed = capsys.readouterr().out
    assert "capital_gain" in printed and "point mass" in printed and f"wrote {out}" in printed


def test_unknown_flag_and_subcommand_stop_with_one_line(capsys):
    from ctrflow.cli.commands import main

    assert main(["schema", "infer", "--input", "x.csv", "--label", "y", "--output", "s.yaml", "--sample-row", "5"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "unknown flag --sample-row (did you mean --sample-rows?)" in err[0]
    assert main(["schema", "guess"]) == 2
    assert len(capsys.readouterr().err.strip().splitlines()) == 1


@pytest.mark.slow
def test_inferred_census_schema_trains_about_as_well_as_the_hand_written_one(tmp_path):
    """5k train rows, 1 epoch, one model: inferred (only --label, col<N> names) vs schemas/census.yaml."""
    from ctrflow.beam_jobs.preprocess import job as preprocess
    from ctrflow.cli import schema_infer
    from ctrflow.model import train

    def head(name: str, lines: int) -> str:
        path = tmp_path / name
        with open(os.path.join(CENSUS, name)) as f:
            path.write_text("".join(f.readline() for _ in range(lines)))
        return str(path)

    train_csv, eval_csv = head("adult.data", 5000), head("adult.test", 2001)
    inferred = tmp_path / "inferred.yaml"
    schema_infer.run(["infer", "--input", train_csv, "--input", eval_csv, "--label", "col14", "--output",
                      str(inferred)])
    auc = {}
    for name, schema in (("inferred", str(inferred)), ("hand", os.path.join(ROOT, "schemas", "census.yaml"))):
        data = tmp_path / name / "data"
        preprocess.run(["--schema", schema, "--train", train_csv, "--eval", eval_csv, "--output", str(data)])
        auc[name] = train.run(["--data", str(data), "--output", str(tmp_path / name / "model"), "--epochs", "1",
                               "--ensemble", "1", "--embedding-dim", "8", "--hidden-units", "32", "--batch-size",
                               "512", "--verbose", "0", "--seed", "42"])["auc"]  # a small model: the schemas differ
    assert auc["inferred"] > 0.85
    assert abs(auc["inferred"] - auc["hand"]) < 0.015, auc


def test_parquet_columns_keep_their_types_and_a_bool_label(tmp_path):
    import pandas as pd

    from ctrflow.cli import schema_infer

    rng = np.random.default_rng(5)
    n = 500
    frame = pd.DataFrame({"request_id": np.arange(n, dtype=np.int64), "price": rng.exponential(10, n).round(2),
                          "country": rng.choice(["de", "fr", "us"], n), "clicked": rng.random(n) < 0.2})
    frame.loc[:9, "price"] = np.nan
    frame.to_parquet(tmp_path / "part-0.parquet")
    result = schema_infer.run(["infer", "--input", str(tmp_path / "*.parquet"), "--label", "clicked", "--output",
                               str(tmp_path / "s.yaml")])
    s = result.schema
    assert s.format.type == "parquet"
    assert (s.column("request_id").role, s.column("request_id").dtype) == ("id", "int64")
    assert s.column("price").role == "numeric" and s.column("country").role == "categorical"
    assert s.label.positive_values == ("true",) and s.label.negative_values == ("false",)


def test_bigquery_spec_is_checked_before_any_read(capsys):
    from ctrflow.cli.commands import main

    assert main(["schema", "infer", "--input", "bigquery://not a table", "--label", "y", "--output", "s.yaml"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "bigquery://PROJECT.DATASET.TABLE" in err[0]
