"""The raw value of a slice column, read back from the transformed eval split (evaluate and the promotion gate).

A preprocess output's TFRecords hold transformed features only, not the raw
table: a categorical column with a vocabulary holds the id of its token, and
the token is the vocabulary's line at that id, so its raw (normalised) value
comes back exactly; an id past the vocabulary is an out-of-vocabulary token
(``OOV``, a value rarer than the vocabulary's frequency threshold). A
bucketized numeric column comes back as its bucket (``bucket 3``).
Hashed, multivalent and non-feature columns cannot be read back: slice them
on a scored table with ``ctrflow score`` + ``ctrflow monitor --slice-by``,
which read the raw rows.
"""
from __future__ import annotations

import os

import numpy as np

from ctrflow.common.errors import UserError
from ctrflow.pipeline import artifacts as af
from ctrflow.pipeline.layout import FeatureLayout, vocab_name
from ctrflow.schemas.types import MISSING_TOKEN, Schema

OOV = "(out of vocabulary)"


def sliceable(schema: Schema, layout: FeatureLayout) -> list[str]:
    """The columns whose raw value the transformed split keeps."""
    sparse = {f.name: f for f in layout.sparse}
    names = []
    for c in schema.categorical:
        f = sparse.get(c.name)
        if f is not None and not f.multivalent and c.categorical.vocabulary is not None:
            names.append(c.name)
    names += [c.name for c in schema.numeric if c.numeric.bucketize is not None and c.name in sparse]
    return names


def check_columns(schema: Schema, layout: FeatureLayout, columns: list[str], flag: str = "--slice-by") -> None:
    """One line naming the usable columns when a slice column cannot be read from the transformed split."""
    ok = sliceable(schema, layout)
    if layout.global_index is not None:
        raise UserError(f"{flag}: the global feat_index layout keeps no per-column ids; slice scored tables with "
                        "`ctrflow monitor --slice-by`")
    bad = [c for c in columns if c not in ok]
    if bad:
        raise UserError(f"{flag} {', '.join(bad)}: the transformed eval split keeps the raw value only of "
                        f"single-valued vocabulary and bucketized columns ({', '.join(ok) or 'none here'}); slice "
                        "any raw column with `ctrflow score` + `ctrflow monitor --slice-by`")


def decode(schema: Schema, layout: FeatureLayout, data_dir: str, column: str, ids: np.ndarray) -> np.ndarray:
    """Transformed ids of ``column`` -> its raw values as text (object array)."""
    from ctrflow.pipeline.vocab_extend import read_vocabulary

    ids = np.asarray(ids).reshape(-1).astype(np.int64)
    col = schema.column(column)
    if col.role == "numeric":
        feature = next(f for f in layout.sparse if f.name == column)
        out = np.array([f"bucket {i}" for i in range(feature.num_ids)] + ["(missing)"], dtype=object)
        if feature.missing_id is not None:
            out[feature.missing_id] = "(missing)"
        return out[np.where((ids >= 0) & (ids < feature.num_ids), ids, feature.num_ids)]
    tokens = [t.decode("utf-8", "replace") for t in
              read_vocabulary(os.path.join(data_dir, af.TRANSFORM_ASSETS, vocab_name(column)))]
    table = np.array([("(missing)" if t == MISSING_TOKEN else t) for t in tokens] + [OOV], dtype=object)
    return table[np.where((ids >= 0) & (ids < len(tokens)), ids, len(tokens))]


def read_ids(file_pattern: str, columns: list[str], batch_size: int = 8192) -> dict[str, np.ndarray]:
    """The transformed ids of ``columns`` in every record of ``file_pattern``, in ``evaluate.score``'s order."""
    import tensorflow as tf

    files = sorted(tf.io.gfile.glob(file_pattern))
    spec = {c: tf.io.FixedLenFeature([], tf.int64, default_value=-1) for c in columns}
    out: dict[str, list] = {c: [] for c in columns}
    for records in tf.data.TFRecordDataset(files, compression_type="GZIP").batch(batch_size):
        parsed = tf.io.parse_example(records, spec)
        for c in columns:
            out[c].append(parsed[c].numpy())
    return {c: np.concatenate(v) if v else np.zeros(0, np.int64) for c, v in out.items()}


def split_slices(schema: Schema, layout: FeatureLayout, data_dir: str, file_pattern: str, columns: list[str],
                 labels: np.ndarray, probs: np.ndarray, top: int, min_rows: int, batch_size: int = 8192) -> dict:
    """``model.slices.slice_metrics`` of a transformed split, its slice columns read back from the records."""
    import pandas as pd

    from ctrflow.model.slices import slice_metrics

    ids = read_ids(file_pattern, columns, batch_size)
    frame = pd.DataFrame({c: decode(schema, layout, data_dir, c, v) for c, v in ids.items()})
    if len(frame) != len(labels):
        raise RuntimeError(f"slice columns have {len(frame)} rows, the predictions {len(labels)}")
    return slice_metrics(frame, columns, labels, probs, top, min_rows)
