"""Which raw column each transformed feature is computed from, when every feature reads exactly one.

Then the transform is a function of each column's value alone, so a batch
scorer may transform each column's distinct values once and gather the
results by row (``beam_jobs.scoring.distinct_values``) and get exactly what the
transform gives row by row. Crosses and the global index read several
columns at once, and a multivalent column's ids are ragged: schemas with
any of them have no per-column sources (``None``), and scoring transforms
row by row.

No TensorFlow here: the scoring job plans with it before TensorFlow is loaded.
"""
from __future__ import annotations

from ctrflow.schemas.types import Schema

SCALED_SUFFIX = "__scaled"
POSITION_SUFFIX = "__position"  # a bucketized value's place in its bucket (piecewise-linear encoding)


def column_sources(schema: Schema) -> dict[str, str] | None:
    """Transformed feature name -> the raw column it reads, or None when some feature reads several.

    Names follow ``pipeline.transform.make_preprocessing_fn``: a numeric
    column ``c`` gives ``c`` (bucket id, or its scaled value when not
    bucketized), ``c__position`` and ``c__scaled``; a categorical column
    gives ``c``.
    """
    if schema.crosses or schema.global_index is not None:
        return None
    if any(c.categorical.multivalent_delimiter for c in schema.categorical):
        return None
    sources = {c.name: c.name for c in schema.categorical}
    for c in schema.numeric:
        sources.update({c.name: c.name, c.name + POSITION_SUFFIX: c.name, c.name + SCALED_SUFFIX: c.name})
    return sources
