"""The schema types: one declarative description of a dataset.

A ``Schema`` says how to read the raw table (``InputFormat``), what every
column is (``Column`` with a role) and how each feature column is transformed
(``NumericTransform`` / ``CategoricalTransform``), plus hashed ``Cross``es for
the wide part. Preprocessing, training, export and scoring all read the same
object, which is what keeps training and serving from drifting apart.
"""
from __future__ import annotations

import dataclasses
from typing import Literal

Role = Literal["numeric", "categorical", "label", "weight", "id", "passthrough", "ignored"]
FormatType = Literal["csv", "parquet", "tfrecord", "bigquery"]
KeyDtype = Literal["string", "int64", "float64"]

MISSING_TOKEN = "__missing__"
"""What a missing categorical value becomes before vocabulary/hashing."""


@dataclasses.dataclass(frozen=True)
class InputFormat:
    """How raw rows are stored."""

    type: FormatType = "csv"
    header: bool = False
    delimiter: str = ","
    skip_lines: int = 0  # leading lines of every file to skip (CSV)
    comment: str | None = None  # lines starting with this are not rows (CSV)
    null_markers: tuple[str, ...] = ("",)  # values meaning "missing", after strip
    strip: bool = True  # strip whitespace around every field (CSV)
    quoting: bool = True  # honour double quotes (CSV)
    encoding: str = "utf-8"  # text encoding of CSV files (any Python codec: latin-1, cp1252, ...)
    max_field_bytes: int = 1 << 20  # a CSV row with a longer field is rejected (not the job)


@dataclasses.dataclass(frozen=True)
class Bucketize:
    """Quantile buckets computed on the training data."""

    num_buckets: int
    epsilon: float = 0.001


@dataclasses.dataclass(frozen=True)
class NumericTransform:
    """What happens to a numeric column, in this order.

    signed log1p, clip, then a missing value takes ``default`` (a value in
    that transformed space) or its own bucket, then bucketize to an id and/or
    scale to a float. Missing values never enter the quantile sketch.
    """

    bucketize: Bucketize | None = None
    log1p: bool = False
    clip: tuple[float | None, float | None] | None = None
    scale: Literal["none", "zscore", "minmax"] = "none"
    default: float = 0.0
    missing_bucket: bool = False  # missing values get their own id (bucketize only)


@dataclasses.dataclass(frozen=True)
class Vocabulary:
    """A vocabulary computed on the training data; unseen values hash to OOV ids."""

    top_k: int | None = None
    frequency_threshold: int = 1
    num_oov_buckets: int = 1


@dataclasses.dataclass(frozen=True)
class Hash:
    """Hash values into a fixed number of ids (no analysis needed)."""

    buckets: int


@dataclasses.dataclass(frozen=True)
class CategoricalTransform:
    """What happens to a categorical column: a vocabulary or hashing."""

    vocabulary: Vocabulary | None = None
    hash: Hash | None = None
    multivalent_delimiter: str | None = None  # "a|b|c" -> several ids


@dataclasses.dataclass(frozen=True)
class Column:
    """One raw column and its role."""

    name: str
    role: Role
    numeric: NumericTransform | None = None
    categorical: CategoricalTransform | None = None
    positive_values: tuple[str, ...] = ()  # label only
    negative_values: tuple[str, ...] = ()  # label only; empty = "anything else"
    dtype: KeyDtype = "string"  # id/passthrough: type in the score output; weight: always float64 (a number)
    group: str | None = None  # interaction group ("user", "item") for Hadamard

    @property
    def is_feature(self) -> bool:
        return self.role in ("numeric", "categorical")

    @property
    def is_key(self) -> bool:
        """Carried from input to score output untouched."""
        return self.role in ("id", "passthrough")


@dataclasses.dataclass(frozen=True)
class Cross:
    """A hashed cross of categorical/bucketized columns for the wide part."""

    columns: tuple[str, ...]
    hash_buckets: int

    @property
    def name(self) -> str:
        return "_x_".join(self.columns)


@dataclasses.dataclass(frozen=True)
class GlobalIndexLayout:
    """DeepFM's ``feat_index``/``feat_value`` inputs: one id space over all feature fields.

    ``numeric``: a bucketized column gives its bucket id with value 1
    ("bucket"), or one id per field with its (scaled) value ("value"); a
    column without bucketize is always "value".
    """

    numeric: Literal["bucket", "value"] = "bucket"


@dataclasses.dataclass(frozen=True)
class Schema:
    """A whole dataset description (see README, "Schema format")."""

    name: str
    format: InputFormat
    columns: tuple[Column, ...]
    crosses: tuple[Cross, ...] = ()
    source: str = "<memory>"  # file it was loaded from, for messages
    global_index: GlobalIndexLayout | None = None  # `layout: global_index`: feat_index/feat_value inputs
    pairwise_group: str | None = None  # categorical column whose rows form pairs (pairwise loss)
    description: str = ""  # free text for people; no job reads it

    def column(self, name: str) -> Column:
        for c in self.columns:
            if c.name == name:
                return c
        raise KeyError(f"{self.source}: no column named {name!r}")

    @property
    def label(self) -> Column | None:
        return next((c for c in self.columns if c.role == "label"), None)

    @property
    def weight(self) -> Column | None:
        """The ``role: weight`` column: each row's weight in the loss, the metrics and calibration (not a feature)."""
        return next((c for c in self.columns if c.role == "weight"), None)

    @property
    def features(self) -> tuple[Column, ...]:
        return tuple(c for c in self.columns if c.is_feature)

    @property
    def numeric(self) -> tuple[Column, ...]:
        return tuple(c for c in self.columns if c.role == "numeric")

    @property
    def categorical(self) -> tuple[Column, ...]:
        return tuple(c for c in self.columns if c.role == "categorical")

    @property
    def keys(self) -> tuple[Column, ...]:
        return tuple(c for c in self.columns if c.is_key)
