"""The contract between the feature pipeline and the models.

Preprocessing turns raw columns into *transformed features*; a ``FeatureLayout``
says what each transformed feature is, so models are built from data, never
from per-dataset code. It is derived after analysis (cardinalities are only
known then) and saved as ``layout.json`` beside the transform graph.

Tensor conventions (what the model's ``call`` receives, keyed by name):
- ``SparseFeature``: int64 ids in ``[0, num_ids)``; shape ``[batch]``, or
  ``[batch, L]`` padded with ``-1`` when ``multivalent``.
- ``SparseFeature.position`` (bucketized numerics): float32 ``[batch]``, the
  value's place in its bucket in [0, 1]; with the id it gives the value's
  piecewise-linear encoding (``model.layers.ple_weights``).
- ``DenseFeature``: float32, shape ``[batch]``.
- ``GlobalIndex`` (DeepFM ``feat_index``/``feat_value`` layout): ``feat_index``
  int64 ``[batch, num_fields]`` in one id space of ``num_ids`` and
  ``feat_value`` float32 ``[batch, num_fields]`` (1.0 for categorical fields,
  the scaled value for numeric fields).
- The label is float32 ``[batch]`` with values 0/1.
- The weight (``FeatureLayout.weight``, a schema's ``role: weight`` column) is
  float32 ``[batch]``, >= 0: each row's weight in the loss, the metrics and
  calibration. Not a model input.
"""
from __future__ import annotations

import dataclasses
import json
from typing import Any


def vocab_name(column: str) -> str:
    """Name of a column's vocabulary asset in the transform graph.

    Here rather than in ``pipeline.transform`` so that readers of an export
    (the drift page) need not import tf.Transform, a slow import, for it.
    """
    return f"vocab_{column}"


@dataclasses.dataclass(frozen=True)
class SparseFeature:
    """One categorical (or bucketized) field: ids to embed."""

    name: str
    num_ids: int
    multivalent: bool = False
    wide_only: bool = False  # crosses: only the linear/wide part sees them
    group: str | None = None  # interaction group, e.g. "user" / "item"
    position: str | None = None  # bucketized numerics: float32 feature, the value's place in its bucket
    missing_id: int | None = None  # bucketized numerics: the id of the missing-value bucket (not ordered)


@dataclasses.dataclass(frozen=True)
class DenseFeature:
    """One scaled numeric value."""

    name: str


@dataclasses.dataclass(frozen=True)
class GlobalIndex:
    """DeepFM's single id space over all fields (field-prefixed tokens)."""

    num_ids: int
    num_fields: int
    fields: tuple[str, ...] = ()
    index_key: str = "feat_index"
    value_key: str = "feat_value"


@dataclasses.dataclass(frozen=True)
class FeatureLayout:
    """Everything a model needs to know about its inputs."""

    sparse: tuple[SparseFeature, ...]
    dense: tuple[DenseFeature, ...]
    label: str
    global_index: GlobalIndex | None = None
    group_key: str | None = None  # column used to form pairs for pairwise loss
    weight: str | None = None  # the sample-weight column (``role: weight``); None: every row weighs 1

    def to_json(self) -> str:
        d = dataclasses.asdict(self)
        if d["weight"] is None:  # an unweighted layout.json stays as it was
            del d["weight"]
        return json.dumps(d, indent=2, sort_keys=True)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "FeatureLayout":
        gi = d.get("global_index")
        return cls(
            sparse=tuple(SparseFeature(**f) for f in d.get("sparse", ())),
            dense=tuple(DenseFeature(**f) for f in d.get("dense", ())),
            label=d["label"],
            global_index=GlobalIndex(**{**gi, "fields": tuple(gi.get("fields", ()))}) if gi else None,
            group_key=d.get("group_key"),
            weight=d.get("weight"),
        )

    @classmethod
    def from_json(cls, text: str) -> "FeatureLayout":
        return cls.from_dict(json.loads(text))
