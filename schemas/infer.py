"""A first schema from a sample of the data: every decision made by a stated rule, and written down.

``ctrflow schema infer`` reads a sample (the first rows of each input file, or
a BigQuery ``LIMIT``) into an Arrow table and calls ``infer_schema``. The
result is YAML that ``loads_schema`` accepts, with a one-line comment above
every column saying which rule decided it, so a user can read the schema,
disagree and edit one line. The rules, in the order they are tried (the
thresholds are the module constants below):

- the label (given): its two classes. A binary column's positive class is a
  conventional positive token (``1``, ``true``, ``yes``, ...) or else the
  minority; values that differ only by case or a trailing ``.`` (``>50K`` /
  ``>50K.``) are one class; a numeric label with more values (ratings) is
  positive from its median up. ``positive`` overrides the rule.
- null markers: any of ``NULL_CANDIDATES`` seen in a feature column (and a
  repeated non-number in an otherwise numeric column) joins ``null_markers``.
- constant (at most one distinct value): ``ignored``.
- near-unique (``ID_UNIQUE`` of the values distinct) and not a float: the
  first is the ``id`` (copied to scores), later ones are ``ignored``.
- numeric when ``NUMERIC_PARSE`` of the present values parse as numbers,
  unless the name says it identifies something (``user_id``, ``zip``), it has
  at most ``FEW_VALUES`` distinct values, or it is an integer code: each
  value's own label rate predicts held-out sample rows better than quantile
  buckets and the base rate do (``code_fit``; Avazu's C14, a user number).
  Numeric columns
  get ``min(distinct, 20)`` quantile buckets and a z-score, ``log1p`` when
  skewed, and when one value holds ``POINT_MASS`` of the rows (zero-inflated
  amounts, census's ``capital_gain``) enough buckets that every value on at
  least 0.04% of the rows repeats across quantiles and gets a bucket of its own.
- multivalent: values that hold ``|``, ``;`` or ``,`` on ``MULTI_ROWS`` of the
  rows and whose parts are far fewer than the values.
- categorical: a vocabulary up to ``VOCAB_MAX`` distinct values (frequency
  threshold 5 when most values are rare, else 1), hashing beyond.

Nothing here reads files: ``sniff_text`` and ``text_table`` turn the first
bytes of text files into the table; the CLI gathers those bytes.
"""
from __future__ import annotations

import csv
import dataclasses
import io
import json
import math
import re
from typing import Any, Sequence

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv

from ctrflow.schemas.loader import SchemaError, loads_schema
from ctrflow.schemas.types import Schema

NULL_CANDIDATES = ("", "?", "NA", "N/A", "\\N", "-", "null", "NULL", "None", "nan", "NaN")
POSITIVE_TOKENS = ("1", "1.0", "true", "t", "yes", "y", "click", "clicked", "positive", "pos")
NEGATIVE_TOKENS = ("0", "0.0", "-1", "false", "f", "no", "n", "negative", "neg")
DELIMITERS = ("\t", ",", ";", "|", " ")  # tried in this order; the first with a steady field count wins
MULTI_DELIMITERS = ("|", ";", ",")
ID_UNIQUE = 0.95  # share of distinct values among present ones that makes a column a key
MIN_ROWS_FOR_ID = 20  # fewer present values cannot tell a key from a small table
NUMERIC_PARSE = 0.99  # share of present values that parse as numbers
FEW_VALUES = 10  # a numeric column with at most this many distinct values is a code: categorical
POINT_MASS = 0.5  # share of the rows on the most frequent value that makes a numeric column zero-inflated
POINT_MASS_SHARE = 0.0004  # a value on at least this share of the rows gets a bucket of its own (5000 buckets)
MAX_BUCKETS = 5000
NUM_BUCKETS = 20
SKEW_LOG1P = 2.0
MULTI_ROWS = 0.1
CODE_GAIN = 0.005  # per-value label rates beat buckets and the base rate by this share of held-out log loss
CODE_REPEATS = 5  # ... judged only when values repeat this often on average (else per-value rates are noise)
VOCAB_MAX = 100_000
RARE_COUNT = 5  # values seen fewer times are rare; a column whose values are mostly rare gets threshold 5
_ID_NAME = re.compile(r"(^id$|_id$|[a-z]Id$|^uid$|zip|postal|_code$|^code$)", re.IGNORECASE)
_NUMBER_RE = r"^[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?$"
_INT_RE = r"^[+-]?\d+$"
_PLAIN = re.compile(r"^[A-Za-z_][A-Za-z0-9_.-]*$")
_YAML_WORDS = {"true", "false", "yes", "no", "on", "off", "y", "n", "null", "none", "~"}


class InferError(SchemaError):
    """The sample cannot give a schema (no label column, a one-valued label, no rows)."""


@dataclasses.dataclass(frozen=True)
class TextLayout:
    """How the text files are split, as sniffed from their first lines."""

    delimiter: str
    header: bool
    names: tuple[str, ...]
    comment: str | None = None
    skip_lines: int = 0
    encoding: str = "utf-8"
    why: tuple[str, ...] = ()  # one line per decision, for the format block's comments


@dataclasses.dataclass(frozen=True)
class Decision:
    """One column's entry in the schema and the rule that chose it."""

    name: str
    role: str
    spec: dict[str, Any]  # the YAML mapping of the column
    why: str

    @property
    def summary(self) -> str:
        """The transform in a few words, for the printed table."""
        s = self.spec
        if self.role == "numeric":
            parts = [f"{s['bucketize']['num_buckets']} buckets"] + (["log1p"] if s.get("log1p") else [])
            return ", ".join(parts + ([s["scale"]] if "scale" in s else []))
        if self.role == "categorical":
            kind = (f"vocab >= {s['vocabulary'].get('frequency_threshold', 1)}" if "vocabulary" in s
                    else f"hash {s['hash']['buckets']}")
            return kind + (f", split on {s['multivalent']['delimiter']!r}" if "multivalent" in s else "")
        if self.role == "label":
            return "positive " + ", ".join(s["positive"])
        return s.get("dtype", "")


@dataclasses.dataclass(frozen=True)
class Inference:
    """The schema text, the parsed schema and the decisions, column by column."""

    text: str
    schema: Schema
    decisions: tuple[Decision, ...]
    format_why: tuple[str, ...]

    def table(self) -> str:
        """The short summary table ``ctrflow schema infer`` prints."""
        rows = [("column", "role", "transform", "why")]
        rows += [(d.name, d.role, d.summary, d.why) for d in self.decisions]
        widths = [min(max(len(r[i]) for r in rows), 28) for i in range(3)]
        return "\n".join("  ".join(c[:w].ljust(w) for c, w in zip(r[:3], widths)) + "  " + r[3] for r in rows)


# ------------------------------------------------------------------ text sniffing


def _decode(heads: Sequence[bytes]) -> tuple[list[str], str]:
    """The texts and their encoding: UTF-8 when every sample decodes, else latin-1 (which always does)."""
    try:
        return [h.decode("utf-8") for h in heads], "utf-8"
    except UnicodeDecodeError:
        return [h.decode("latin-1") for h in heads], "latin-1"


def _lines(text: str, complete: bool) -> list[str]:
    """Non-empty lines without their line ends; a cut last line is dropped unless the file was read whole."""
    lines = text.split("\n")
    if not complete and len(lines) > 1:
        lines = lines[:-1]
    return [ln.rstrip("\r") for ln in lines if ln.strip()]


def _fields(line: str, delimiter: str) -> list[str]:
    return next(csv.reader([line], delimiter=delimiter, quotechar='"'), [])


def _mode(counts: Sequence[int]) -> tuple[int, float]:
    values, freq = np.unique(np.asarray(counts), return_counts=True)
    return int(values[freq.argmax()]), float(freq.max() / len(counts))


def _is_number(v: str) -> bool:
    return re.match(_NUMBER_RE, v.strip()) is not None


def sniff_text(heads: Sequence[tuple[bytes, bool]], *, delimiter: str | None = None, header: bool | None = None,
               names: Sequence[str] | None = None) -> TextLayout:
    """The layout of text files from their first bytes (``(bytes, read whole)`` per file).

    ``delimiter``/``header``/``names`` given by the user win over the sniffed ones.
    """
    texts, encoding = _decode([h for h, _ in heads])
    files = [_lines(t, whole)[:1000] for t, (_, whole) in zip(texts, heads)]
    every = [ln for f in files for ln in f]
    if not every:
        raise InferError("the input has no rows")
    why = []
    if encoding != "utf-8":
        why.append("encoding: the sample is not valid UTF-8; latin-1 reads every byte")
    if delimiter is None:
        for cand in DELIMITERS:
            count, share = _mode([len(_fields(ln, cand)) for ln in every])
            if count > 1 and share >= 0.9:
                delimiter = cand
                why.append(f"delimiter {cand!r}: {share:.0%} of the sample lines have {count} fields")
                break
        else:
            raise InferError("no delimiter of " + ", ".join(map(repr, DELIMITERS)) + " splits the sample lines into "
                             "a steady number of fields; give --delimiter")
    width, _ = _mode([len(_fields(ln, delimiter)) for ln in every])
    comment, skip = _leading_junk(files, delimiter, width, why)
    files = [f[skip:] for f in files]
    if comment:
        files = [[ln for ln in f if not ln.startswith(comment)] for f in files]
    first = files[0]
    if header is None:
        header, reason = _sniff_header(first, delimiter)
        why.append(reason)
    else:
        why.append(f"header: {str(header).lower()} (given)")
    if header:
        found = tuple(v.strip() for v in _fields(first[0], delimiter))
        names = tuple(names) if names else found
    elif names:
        why.append("names: given with --names")
    else:
        names = tuple(f"col{i}" for i in range(width))
        why.append(f"names: col0..col{width - 1} (no header; give --names a,b,c to name them)")
    if len(names) != width or len(set(names)) != len(names):
        raise InferError(f"{len(names)} column names ({', '.join(names)}) for {width} fields a line"
                         + ("" if len(set(names)) == len(names) else ", with repeats"))
    return TextLayout(delimiter=delimiter, header=header, names=tuple(names), comment=comment, skip_lines=skip,
                      encoding=encoding, why=tuple(why))


def _leading_junk(files: list[list[str]], delimiter: str, width: int, why: list[str]) -> tuple[str | None, int]:
    """(comment character, skip_lines) for lines before the data with another field count (adult.test's first)."""
    junk = []
    for f in files:
        k = 0
        while k < min(len(f), 5) and len(_fields(f[k], delimiter)) != width:
            k += 1
        junk.append(f[:k])
    odd = [ln for j in junk for ln in j]
    if not odd:
        return None, 0
    lead = {ln[0] for ln in odd}
    data_leads = {ln[:1] for f, j in zip(files, junk) for ln in f[len(j):]}
    if len(lead) == 1 and not (c := next(iter(lead))).isalnum() and c not in "\"'+-." and c not in data_leads:
        why.append(f"comment {c!r}: {len(odd)} leading line(s) start with it and do not have {width} fields")
        return c, 0
    if len({len(j) for j in junk}) == 1:
        why.append(f"skip_lines {len(junk[0])}: every file starts with lines that do not have {width} fields")
        return None, len(junk[0])
    why.append(f"{len(odd)} leading line(s) of some files do not have {width} fields: they will be rejected rows")
    return None, 0


def _sniff_header(lines: list[str], delimiter: str) -> tuple[bool, str]:
    """A header when its values do not look like the rows below them."""
    if len(lines) < 2:
        return False, "header: false (a single line)"
    top = [v.strip() for v in _fields(lines[0], delimiter)]
    rest = [[v.strip() for v in _fields(ln, delimiter)] for ln in lines[1:201]]
    cols = [[r[i] for r in rest if len(r) == len(top)] for i in range(len(top))]
    for name, col in zip(top, cols):
        present = [v for v in col if v not in NULL_CANDIDATES]
        if present and not _is_number(name) and name not in NULL_CANDIDATES and \
                sum(map(_is_number, present)) >= 0.9 * len(present):
            return True, f"header: true (first line's {name!r} is not a number; the values below it are)"
    if all(top) and len(set(top)) == len(top) and not any(map(_is_number, top)) and \
            not any(name in col for name, col in zip(top, cols)):
        return True, "header: true (first line's values are distinct and never occur below)"
    return False, "header: false (the first line looks like the rows below it)"


def text_table(heads: Sequence[tuple[bytes, bool]], layout: TextLayout, sample_rows: int) -> tuple[pa.Table, int]:
    """(string table of the sample rows, lines of another field count left out), read with pyarrow.csv."""
    texts, _ = _decode([h for h, _ in heads])
    per_file = max(1, math.ceil(sample_rows / len(heads)))
    lines: list[str] = []
    for t, (_, whole) in zip(texts, heads):
        f = _lines(t, whole)[layout.skip_lines:]
        if layout.comment:
            f = [ln for ln in f if not ln.startswith(layout.comment)]
        lines += f[1 if layout.header else 0:][:per_file]
    bad = 0

    def skip(_row) -> str:
        nonlocal bad
        bad += 1
        return "skip"

    table = pacsv.read_csv(
        io.BytesIO("\n".join(lines).encode("utf-8") + b"\n"),
        read_options=pacsv.ReadOptions(column_names=list(layout.names)),
        parse_options=pacsv.ParseOptions(delimiter=layout.delimiter, invalid_row_handler=skip),
        convert_options=pacsv.ConvertOptions(column_types={n: pa.string() for n in layout.names},
                                             strings_can_be_null=False, quoted_strings_can_be_null=False))
    return table, bad


# ------------------------------------------------------------------ column rules


@dataclasses.dataclass
class _Stats:
    rows: int
    markers: dict[str, int]  # null candidates seen, with counts
    values: list[str]  # distinct present values, most frequent first
    counts: np.ndarray  # their counts
    numbers: np.ndarray | None  # present values as floats when NUMERIC_PARSE of them parse
    parse_rate: float
    integers: bool
    odd: dict[str, int]  # non-numbers of a numeric column (repeated ones become null markers)

    @property
    def present(self) -> int:
        return int(self.counts.sum())

    @property
    def distinct(self) -> int:
        return len(self.values)


def _stats(arr: pa.Array) -> _Stats:
    s = _strings(arr)
    vc = pc.value_counts(s)
    vals, cnts = vc.field("values").to_pylist(), np.asarray(vc.field("counts"), np.int64)
    markers = {v: int(c) for v, c in zip(vals, cnts) if v in NULL_CANDIDATES}
    keep = np.array([v not in NULL_CANDIDATES for v in vals], bool)
    vals = [v for v, k in zip(vals, keep) if k]
    cnts = cnts[keep] if len(cnts) else cnts
    order = np.argsort(-cnts, kind="stable")
    vals, cnts = [vals[i] for i in order], cnts[order]
    is_num = np.array([re.match(_NUMBER_RE, v) is not None for v in vals], bool)
    parsed = int(cnts[is_num].sum()) if len(vals) else 0
    present = int(cnts.sum())
    rate = parsed / present if present else 0.0
    numbers, odd, integers = None, {}, False
    if present and rate >= NUMERIC_PARSE:
        numbers = np.repeat(np.array([float(v) for v, k in zip(vals, is_num) if k]), cnts[is_num])
        integers = all(re.match(_INT_RE, v) for v, k in zip(vals, is_num) if k)
        odd = {v: int(c) for v, c, k in zip(vals, cnts, is_num) if not k}
    return _Stats(rows=len(arr), markers=markers, values=vals, counts=cnts, numbers=numbers, parse_rate=rate,
                  integers=integers, odd=odd)


def _strings(arr: pa.Array) -> pa.Array:
    return pc.fill_null(pc.utf8_trim_whitespace(arr.cast(pa.string())), "")


def _row_numbers(arr: pa.Array) -> np.ndarray:
    """Every row's value as a float, NaN where it is missing or not a number."""
    s = _strings(arr)
    ok = pc.match_substring_regex(s, _NUMBER_RE)
    return np.asarray(pc.cast(pc.if_else(ok, s, pa.scalar(None, pa.string())), pa.float64()).fill_null(np.nan))


def _label_rows(arr: pa.Array, spec: dict[str, Any]) -> np.ndarray:
    """1 / 0 per row by the label decision, NaN for a value in neither class."""
    s = _strings(arr)
    pos = np.asarray(pc.is_in(s, value_set=pa.array(spec["positive"], pa.string())))
    neg = np.asarray(pc.is_in(s, value_set=pa.array(spec["negative"], pa.string())))
    return np.where(pos, 1.0, np.where(neg, 0.0, np.nan))


def _label(name: str, st: _Stats, positive: Sequence[str] | None) -> Decision:
    """The label's classes (see the module doc)."""
    missing = st.rows - st.present
    note = f"; {missing} sample rows have no label (they will be rejected)" if missing else ""
    vals = st.values
    if positive:
        pos = [v for v in vals if v in positive] or list(positive)
        neg = [v for v in vals if v not in positive]
        return Decision(name, "label", {"positive": pos, "negative": neg},
                        f"label: positive {pos} as given, negative the other values seen{note}")
    if len(vals) < 2:
        raise InferError(f"label column {name!r} has {len(vals)} distinct value(s) in the sample: nothing to learn")
    classes: dict[str, list[str]] = {}
    for v in vals:
        classes.setdefault(v.lower().rstrip("."), []).append(v)
    counts = {k: sum(int(st.counts[vals.index(v)]) for v in vs) for k, vs in classes.items()}
    if len(classes) == 2:
        a, b = sorted(classes, key=lambda k: counts[k])  # a: minority
        known = [k for k in classes if k in POSITIVE_TOKENS]
        other = [k for k in classes if k in NEGATIVE_TOKENS]
        if len(known) == 1 and (len(other) == 1 or known[0] not in NEGATIVE_TOKENS):
            pos_key, rule = known[0], "a conventional positive value"
        else:
            pos_key, rule = a, "the minority class"
        neg_key = b if pos_key == a else a
        share = counts[pos_key] / sum(counts.values())
        merged = " (variants differing by case or a trailing '.' are one class)" \
            if len(vals) > 2 else ""
        return Decision(name, "label", {"positive": classes[pos_key], "negative": classes[neg_key]},
                        f"label: 2 classes, positive = {rule} ({share:.1%} of rows){merged}{note}")
    if st.numbers is not None and not st.odd:
        median = float(np.median(st.numbers))
        pos = [v for v in vals if float(v) >= median]
        neg = [v for v in vals if float(v) < median]
        if pos and neg:
            share = sum(int(st.counts[vals.index(v)]) for v in pos) / st.present
            return Decision(name, "label", {"positive": sorted(pos, key=float), "negative": sorted(neg, key=float)},
                            f"label: {len(vals)} numeric values, positive from the median {median:g} up "
                            f"({share:.1%} of rows); --positive to choose{note}")
    raise InferError(f"label column {name!r} has {len(vals)} values ({', '.join(vals[:8])}...): "
                     "give --positive with its positive values")


def _numeric(name: str, st: _Stats) -> Decision:
    x = st.numbers
    n, d = len(x), st.distinct
    top_share = float(st.counts[0]) / n
    spec: dict[str, Any] = {}
    sd = float(x.std())
    skew = float(((x - x.mean()) ** 3).mean() / sd ** 3) if sd > 0 else 0.0
    if skew > SKEW_LOG1P:  # a right tail (counts, amounts); signed, so negative values keep their order
        spec["log1p"] = True
    if top_share >= POINT_MASS and d >= NUM_BUCKETS:
        frequent = int((st.counts >= POINT_MASS_SHARE * n).sum())
        buckets = int(min(MAX_BUCKETS, max(NUM_BUCKETS, math.ceil(2 / POINT_MASS_SHARE))))
        why = (f"numeric, point mass: {st.values[0]} on {top_share:.0%} of rows, {d} distinct; {buckets} buckets so "
               f"each of the {frequent} values on >= {POINT_MASS_SHARE:.2%} of rows gets a bucket of its own")
    else:
        buckets = max(2, min(d, NUM_BUCKETS))
        why = f"numeric: {st.parse_rate:.0%} parse as numbers, {d} distinct; {buckets} quantile buckets"
    spec["bucketize"] = {"num_buckets": buckets}
    spec["scale"] = "zscore"
    if spec.get("log1p"):
        why += f", log1p (skew {skew:.1f})"
    if st.odd:
        why += f"; {sum(st.odd.values())} values that are not numbers ({', '.join(list(st.odd)[:3])}) will be rejected"
    return Decision(name, "numeric", spec, why)


def _vocabulary(counts: np.ndarray, d: int) -> tuple[dict[str, Any], str]:
    if d > VOCAB_MAX:
        buckets = 1 << max(10, min(22, math.ceil(math.log2(2 * d))))
        return {"hash": {"buckets": buckets}}, f"{d} distinct > {VOCAB_MAX}: hashed into {buckets} buckets"
    rare = float((counts < RARE_COUNT).mean()) if d else 0.0
    threshold = RARE_COUNT if rare > 0.5 else 1
    text = (f"{d} distinct, {rare:.0%} seen < {RARE_COUNT} times: vocabulary, values seen < {RARE_COUNT} times "
            "share the OOV id") if threshold > 1 else f"{d} distinct: vocabulary"
    return {"vocabulary": {"frequency_threshold": threshold, "num_oov_buckets": 1} if threshold > 1
            else {"num_oov_buckets": 1}}, text


def _multivalent(st: _Stats, file_delimiter: str) -> tuple[str, np.ndarray, int] | None:
    """(delimiter, part counts, rows holding it) when the values are lists of a smaller set of parts."""
    for delim in MULTI_DELIMITERS:
        if delim == file_delimiter:
            continue
        holding = sum(int(c) for v, c in zip(st.values, st.counts) if delim in v)
        if holding < MULTI_ROWS * st.present:
            continue
        parts: dict[str, int] = {}
        for v, c in zip(st.values, st.counts):
            for p in v.split(delim):
                if p.strip():
                    parts[p.strip()] = parts.get(p.strip(), 0) + int(c)
        if 2 <= len(parts) <= 0.5 * st.distinct:
            return delim, np.array(sorted(parts.values(), reverse=True)), holding
    return None


def code_fit(x: np.ndarray, y: np.ndarray, prior_rows: float = 20.0) -> tuple[float, float, float]:
    """Held-out log loss of the label from each value's own rate, from quantile buckets, from the base rate.

    Two folds (alternate rows), averaged.
    Rates are smoothed toward the fold's base rate with ``prior_rows`` rows; a
    value unseen in the fitting fold predicts the base rate. A code (an ad
    slot, a user number) has rates that jump between neighbouring values, so
    its own rates win; a quantity's rates move smoothly, so buckets do as well.
    A column without signal ties the base rate either way (and stays numeric).
    """
    ok = ~np.isnan(x) & ~np.isnan(y)
    x, y = x[ok], y[ok]
    folds = np.arange(len(x)) % 2 == 0
    losses = np.zeros(3)
    for fit in (folds, ~folds):
        test = ~fit
        prior = float(y[fit].mean())
        edges = np.unique(np.quantile(x[fit], np.linspace(0, 1, NUM_BUCKETS + 1)[1:-1]))
        b = np.searchsorted(edges, x, side="right").astype(np.float64)
        for i, keys in enumerate((x, b)):
            uniq, inv = np.unique(keys[fit], return_inverse=True)
            rate = (np.bincount(inv, y[fit]) + prior_rows * prior) / (np.bincount(inv) + prior_rows)
            at = np.clip(np.searchsorted(uniq, keys[test]), 0, len(uniq) - 1)
            p = np.clip(np.where(uniq[at] == keys[test], rate[at], prior), 1e-6, 1 - 1e-6)
            losses[i] += -float(np.mean(y[test] * np.log(p) + (1 - y[test]) * np.log(1 - p))) / 2
        base = min(max(prior, 1e-6), 1 - 1e-6)
        losses[2] += -float(np.mean(y[test] * np.log(base) + (1 - y[test]) * np.log(1 - base))) / 2
    return float(losses[0]), float(losses[1]), float(losses[2])


def _column(name: str, st: _Stats, file_delimiter: str, have_id: bool, x: np.ndarray | None = None,
            y: np.ndarray | None = None) -> Decision:
    if st.distinct <= 1:
        what = f"the one value {st.values[0]!r}" if st.distinct else "no value"
        return Decision(name, "ignored", {}, f"constant: {what} in {st.rows} rows, nothing to learn")
    unique = st.distinct / st.present
    is_float = st.numbers is not None and not st.integers
    if unique >= ID_UNIQUE and st.present >= MIN_ROWS_FOR_ID and not is_float:
        if have_id:
            return Decision(name, "ignored", {}, f"near-unique ({unique:.0%} distinct): a key, not a feature")
        dtype = "int64" if st.integers and all(-(1 << 63) <= int(v) < (1 << 63) for v in st.values) else "string"
        return Decision(name, "id", {"dtype": dtype},
                        f"id: near-unique ({unique:.0%} of {st.present} values distinct); copied to the scores")
    if st.numbers is not None:
        if _ID_NAME.search(name):
            spec, text = _vocabulary(st.counts, st.distinct)
            return Decision(name, "categorical", spec, f"categorical although numeric: the name says it identifies "
                                                       f"something; {text}")
        if st.distinct <= FEW_VALUES:
            spec, text = _vocabulary(st.counts, st.distinct)
            return Decision(name, "categorical", spec, f"categorical: numbers but only {st.distinct} distinct "
                                                       f"(<= {FEW_VALUES}), one id each")
        if float(st.counts[0]) / st.present < POINT_MASS and st.integers and x is not None and y is not None \
                and st.distinct * CODE_REPEATS <= st.present:
            per_value, buckets, base = code_fit(x, y)
            if per_value < min(buckets, base) * (1 - CODE_GAIN):
                spec, text = _vocabulary(st.counts, st.distinct)
                return Decision(name, "categorical", spec,
                                f"categorical although integer (a code): each value's own label rate predicts "
                                f"held-out rows better than {NUM_BUCKETS} buckets (log loss {per_value:.4f} vs "
                                f"{buckets:.4f}); {text}")
        return _numeric(name, st)
    rate = "" if st.parse_rate == 0 else f"only {st.parse_rate:.0%} parse as numbers; "
    multi = _multivalent(st, file_delimiter)
    if multi is not None:
        delim, parts, holding = multi
        spec, text = _vocabulary(parts, len(parts))
        return Decision(name, "categorical", {"multivalent": {"delimiter": delim}, **spec},
                        f"multivalent: {holding / st.present:.0%} of values hold {delim!r}, {len(parts)} distinct "
                        f"parts in {st.distinct} values; {text}")
    spec, text = _vocabulary(st.counts, st.distinct)
    return Decision(name, "categorical", spec, f"categorical: {rate}{text}")


def infer_schema(table: pa.Table, label: str, *, file_type: str, name: str, layout: TextLayout | None = None,
                 positive: Sequence[str] | None = None, source: str = "", rejected_lines: int = 0) -> Inference:
    """The schema of ``table`` (the sample, any column types) with ``label`` as the target.

    ``file_type`` is the schema's ``format.type`` (csv, parquet, bigquery);
    ``layout`` the sniffed text layout of CSV input.
    """
    if label not in table.column_names:
        hint = "; the file has no header: give --names, or use the col<N> names" \
            if layout is not None and not layout.header else ""
        raise InferError(f"--label {label!r} is not a column of the input ({', '.join(table.column_names)}){hint}")
    if table.num_rows == 0:
        raise InferError("the input sample has no rows")
    stats = {c: _stats(table.column(c).combine_chunks()) for c in table.column_names}
    markers: dict[str, list[str]] = {}
    for c, st in stats.items():
        if c == label:
            continue
        for m, cnt in st.markers.items():
            markers.setdefault(m, []).append(f"{c} {cnt}")
        for v, cnt in st.odd.items():
            if cnt >= 2 and len(v) <= 20:  # a repeated word in a numeric column means "missing"
                markers.setdefault(v, []).append(f"{c} {cnt}")
    label_decision = _label(label, stats[label], positive)
    y = _label_rows(table.column(label).combine_chunks(), label_decision.spec)
    decisions, have_id = [], False
    for c in table.column_names:
        st = stats[c]
        if c == label:
            d = label_decision
        else:
            for v in list(st.odd):
                if v in markers:  # now a null marker: not a value of the column
                    i = st.values.index(v)
                    st.values.pop(i)
                    st.counts = np.delete(st.counts, i)
                    st.odd.pop(v)
            x = _row_numbers(table.column(c).combine_chunks()) if st.numbers is not None else None
            d = _column(c, st, layout.delimiter if layout else "", have_id, x, y)
        have_id |= d.role == "id"
        decisions.append(d)
    if not any(d.role in ("numeric", "categorical") for d in decisions):
        raise InferError("no column of the sample can be a feature (every one is the label, constant or a key)")
    null_markers = sorted(set(markers) | {""})
    format_spec: dict[str, Any] = {"type": file_type}
    format_why = list(layout.why) if layout else []
    if layout is not None:
        format_spec.update(header=layout.header, delimiter=layout.delimiter)
        if layout.comment:
            format_spec["comment"] = layout.comment
        if layout.skip_lines:
            format_spec["skip_lines"] = layout.skip_lines
        if layout.encoding != "utf-8":
            format_spec["encoding"] = layout.encoding
        format_spec.update(strip=True, quoting=True)
        format_why.append("strip, quoting: true (fields may be padded or quoted anywhere in the full data)")
    format_spec["null_markers"] = null_markers
    seen = "; ".join(f"{m!r} in {', '.join(where[:4])}{' ...' if len(where) > 4 else ''}"
                     for m, where in sorted(markers.items()))
    format_why.append("null_markers: " + (f"seen {seen}" if seen else "only the empty value (none other seen)"))
    if rejected_lines:
        format_why.append(f"{rejected_lines} sample lines with another field count were left out")
    text = _render(name, source, table.num_rows, format_spec, format_why, decisions)
    return Inference(text=text, schema=loads_schema(text, f"<inferred {name}>"), decisions=tuple(decisions),
                     format_why=tuple(format_why))


# ------------------------------------------------------------------ YAML


def _scalar(v: Any) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, (int, float)):
        return repr(v)
    if isinstance(v, str) and _PLAIN.match(v) and v.lower() not in _YAML_WORDS:
        return v
    return json.dumps(v, ensure_ascii=False)  # a JSON string is a YAML double-quoted scalar


def _flow(v: Any) -> str:
    if isinstance(v, dict):
        return "{" + ", ".join(f"{_scalar(k)}: {_flow(x)}" for k, x in v.items()) + "}"
    if isinstance(v, (list, tuple)):
        return "[" + ", ".join(_flow(x) for x in v) + "]"
    return _scalar(v)


def _render(name: str, source: str, rows: int, fmt: dict[str, Any], format_why: list[str],
            decisions: list[Decision]) -> str:
    out = [f"# Inferred by `ctrflow schema infer` from {rows} sample rows of {source or 'the input'}.",
           "# Each comment says which rule chose the line below it; edit freely (the loader checks every key).",
           f"name: {_scalar(name)}",
           f"description: {_scalar(f'Inferred from {source}' if source else 'Inferred')}",
           "format:"]
    out += [f"  # {w}" for w in format_why]
    out += [f"  {k}: {_flow(v)}" for k, v in fmt.items()]
    out.append("columns:")
    for d in decisions:
        out.append(f"  # {d.name}: {d.why}")
        out.append("  - " + _flow({"name": d.name, "role": d.role, **d.spec}))
    return "\n".join(out) + "\n"
