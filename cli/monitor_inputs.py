"""What ``ctrflow monitor`` reads: a scored partition in any ``--output-format``, and a day's labels.

Scores: ``part-*.parquet``, ``part-*.csv`` (with its header) or
``part-*.tfrecord.gz`` (one-value tf.Examples), as ``ctrflow score`` writes them.

Labels (``--labels-format``):

- ``schema`` (default): files laid out like the model's input, read by the
  scoring job's own readers: the schema's delimiter, header or not, comment
  and skip lines, encoding; ``.parquet`` / ``.tfrecord`` files by extension.
  Such a file may be the scored table itself once its label column is filled.
- ``csv``: comma-separated with a header row naming the columns (any subset:
  the id or locator columns, the label, slice columns).

The label value is stripped as the schema says; a null marker or a value that
is neither positive nor negative counts in ``invalid_label_rows``.

The join key is the schema's id column(s); without one, the scores' row
locator ``(source_file, source_offset)``: a labels table that has those two
columns joins on them, otherwise each label row gets its own locator from
the reader (its file and the byte offset of its line, or row number), so the
label file must be the file that was scored (same bytes). A score's
``source_file`` is spelled as the scorer's ``--input`` was (maybe relative to
its working directory, or through a symbolic link): it matches the label file
of the same resolved path, or else the one whose path ends with it.
"""
from __future__ import annotations

import os

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.parquet as pq
from apache_beam.io.filesystem import CompressionTypes
from apache_beam.io.filesystems import FileSystems

from ctrflow.beam_jobs.input.plan import match_files, plan_reads
from ctrflow.beam_jobs.input.readers import read_task
from ctrflow.beam_jobs.input.tasks import InputError
from ctrflow.common.errors import UserError
from ctrflow.pipeline import artifacts as af
from ctrflow.pipeline.parsing import LOCATOR_FIELDS, OFFSET_COLUMN
from ctrflow.schemas import raw_rules
from ctrflow.schemas.types import Schema

LABEL = "__label__"
LABEL_FORMATS = ("schema", "csv")
_READ_RANGE = 1 << 62  # one read task per file: a single process reads it anyway


def norm_path(path: str) -> str:
    """Local paths absolute with links resolved (the same file by another name), URLs as they are."""
    return path if "://" in path else os.path.realpath(path)


def align_locator_files(scores: pd.DataFrame, labels: pd.DataFrame) -> pd.DataFrame:
    """``labels`` with each ``source_file`` renamed to the scores' spelling of the same file.

    The scorer kept its ``--input`` pattern's spelling (``day/test.csv`` from
    another working directory, a link): a label file matches a score file of
    the same resolved path, else the only one its path ends with.
    """
    col = LOCATOR_FIELDS[0]
    score_files = [str(f) for f in pd.unique(scores[col].dropna())]
    rename = {}
    for lf in (str(f) for f in pd.unique(labels[col].dropna())):
        if lf in score_files:
            continue
        same = [f for f in score_files if norm_path(f) == norm_path(lf)]
        if not same:
            same = [f for f in score_files if "://" not in f and not os.path.isabs(f)
                    and norm_path(lf).endswith(os.sep + os.path.normpath(f))]
        if len(same) == 1:
            rename[lf] = same[0]
    return labels.assign(**{col: labels[col].replace(rename)}) if rename else labels


def _tfrecord_scores(path: str) -> pa.Table:
    from tfx_bsl.coders import example_coder

    from ctrflow.beam_jobs.input.tfrecord_reader import _tfrecords

    decoder = example_coder.ExamplesToRecordBatchDecoder()
    with FileSystems.open(path, compression_type=CompressionTypes.AUTO) as f:
        records = list(_tfrecords(f, path))
    if not records:
        return pa.table({})
    rb = decoder.DecodeBatch(records)
    columns = {}
    for name, arr in zip(rb.schema.names, rb.columns):  # one value per list (an empty list: null)
        flat = arr.flatten()
        lengths = np.asarray(arr.value_lengths().fill_null(0))
        if (lengths == 1).all():
            values = flat
        else:
            idx = np.cumsum(np.r_[0, lengths[:-1]])
            values = pa.array([flat[int(i)].as_py() if n else None for i, n in zip(idx, lengths)], flat.type)
        if pa.types.is_binary(values.type) or pa.types.is_large_binary(values.type):
            values = values.cast(pa.string())
        columns[name] = values
    return pa.table(columns)


def _score_table(path: str) -> pa.Table:
    name = path.lower()
    if name.endswith(".parquet"):
        with FileSystems.open(path) as f:
            return pq.read_table(pa.BufferReader(f.read()))
    if name.endswith(af.TFRECORD_SUFFIX) or ".tfrecord" in name:
        return _tfrecord_scores(path)
    with FileSystems.open(path, compression_type=CompressionTypes.AUTO) as f:
        data = f.read()
    if not data.strip():
        return pa.table({})
    return pacsv.read_csv(pa.BufferReader(data), convert_options=pacsv.ConvertOptions(strings_can_be_null=True))


def read_scores(partition_dir: str) -> pd.DataFrame:
    """Every score file of a published partition, whatever ``--output-format`` wrote it."""
    files = sorted(f for f, _ in match_files([os.path.join(partition_dir, af.SCORE_FILES)]))
    tables = [t for t in (_score_table(f) for f in files) if t.num_columns]
    if not tables:
        raise UserError(f"--scores: no {af.SCORE_FILES} files with rows in {partition_dir}; was the date scored "
                        "(to files, not only --output-table)?")
    df = pa.concat_tables(tables, promote_options="permissive").to_pandas()
    if "score" not in df.columns:
        raise UserError(f"--scores {partition_dir}: the files have no score column (columns: {', '.join(df.columns)})")
    return df


def _read_schema_format(schema: Schema, patterns: list[str], needed: list[str]) -> tuple[pd.DataFrame, int]:
    """Labels read like the scored input; each row also gets its locator. Returns (frame, rows not split)."""
    try:
        tasks, _ = plan_reads(schema, patterns, needed, range_bytes=_READ_RANGE)
    except InputError as e:
        raise UserError(f"--labels: {e}") from None
    frames, bad = [], 0
    for task in tasks:
        for table, rejected in read_task(schema, task, needed):
            bad += len(rejected)
            df = table.select([c for c in needed if c in table.column_names]).to_pandas()
            df[LOCATOR_FIELDS[0]] = task.path
            df[LOCATOR_FIELDS[1]] = table.column(OFFSET_COLUMN).to_numpy()
            frames.append(df)
    return (pd.concat(frames, ignore_index=True) if frames else pd.DataFrame(columns=needed + list(LOCATOR_FIELDS)),
            bad)


def _read_headed(patterns: list[str], needed: list[str]) -> pd.DataFrame:
    files = [f for f, _ in match_files(patterns)]
    frames = []
    for f in sorted(files):
        with FileSystems.open(f, compression_type=CompressionTypes.AUTO) as fh:
            data = fh.read()
        if f.lower().endswith(".parquet"):
            table = pq.read_table(pa.BufferReader(data))
        else:
            table = pacsv.read_csv(pa.BufferReader(data), convert_options=pacsv.ConvertOptions(
                column_types={c: pa.string() for c in needed}, strings_can_be_null=False))
        missing = [c for c in needed if c not in table.column_names]
        if missing:
            raise UserError(f"--labels {f}: column {missing[0]!r} is missing (has {', '.join(table.column_names)})")
        frames.append(table.select(needed).to_pandas())
    return pd.concat(frames, ignore_index=True)


def _has_locator(patterns: list[str]) -> bool:
    """A headed/Parquet labels table that carries the scores' locator columns itself."""
    first = next(iter(f for f, _ in match_files(patterns)), None)
    if first is None:
        return False
    if first.lower().endswith(".parquet"):
        with FileSystems.open(first) as f:
            names = pq.ParquetFile(f).schema_arrow.names
    else:
        with FileSystems.open(first, compression_type=CompressionTypes.AUTO) as f:
            names = [n.strip().strip('"') for n in f.readline().decode("utf-8", "replace").strip().split(",")]
    return all(c in names for c in LOCATOR_FIELDS)


def read_labels(schema: Schema, patterns: list[str], keys: list[str], fmt: str = "schema",
                extra: list[str] = ()) -> tuple[pd.DataFrame, int]:
    """(keys + ``extra`` columns + 0/1 ``LABEL``, rows without a valid label).

    ``keys`` are the id columns, or ``LOCATOR_FIELDS`` when the schema has none.
    """
    if not [f for f, _ in match_files(patterns)]:
        raise UserError(f"--labels: no file matches {', '.join(patterns)}")
    label = schema.label
    locator = list(keys) == list(LOCATOR_FIELDS)
    extra = [c for c in extra if c not in keys and c != label.name]
    bad = 0
    if locator and fmt == "schema" and not _has_locator(patterns):
        df, bad = _read_schema_format(schema, patterns, [label.name, *extra])
    elif fmt == "schema" and not locator:
        df, bad = _read_schema_format(schema, patterns, [*keys, label.name, *extra])
        df = df.drop(columns=list(LOCATOR_FIELDS))
    else:
        df = _read_headed(patterns, [*keys, label.name, *extra])
        if locator:
            df[LOCATOR_FIELDS[1]] = df[LOCATOR_FIELDS[1]].astype(np.int64)
    absent = [c for c in [label.name, *extra] if c not in df.columns]
    if absent:
        raise UserError(f"--labels {', '.join(patterns)}: no column {', '.join(map(repr, absent))} (a --slice-by "
                        f"column must be in the scores or the labels; columns: {', '.join(map(str, df.columns))})")
    text = df[label.name].astype(str)
    if raw_rules.strips(schema.format) or fmt == "csv":
        text = text.str.strip()
    null = text.isin(list(schema.format.null_markers))
    pos = text.isin([str(v) for v in label.positive_values]) & ~null
    neg = (text.isin([str(v) for v in label.negative_values]) if label.negative_values else ~pos) & ~null
    valid = pos | neg
    out = df.loc[valid, [*keys, *extra]].copy()
    for c in extra:  # raw slice values as the scorer would read them: stripped, null markers missing
        values = out[c].astype("string")
        values = values.str.strip() if raw_rules.strips(schema.format) else values
        out[c] = values.mask(values.isin(list(schema.format.null_markers)))
    out[LABEL] = pos[valid].astype(np.float64).to_numpy()
    return out.reset_index(drop=True), int((~valid).sum()) + bad
