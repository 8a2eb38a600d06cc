"""Feature pipeline logic: parsing raw rows, the schema-driven tf.Transform
preprocessing_fn, the model-facing feature layout and feature profiles.

Pure functions and TF graph code only; the Beam wiring lives in ``beam_jobs``.
"""
from typing import TYPE_CHECKING

from ctrflow.common.lazy_exports import lazy_exports

if TYPE_CHECKING:  # what static tools read; at run time each name loads its module on first use
    from ctrflow.pipeline import artifacts
    from ctrflow.pipeline.drift import drift_report
    from ctrflow.pipeline.layout import DenseFeature, FeatureLayout, GlobalIndex, SparseFeature
    from ctrflow.pipeline.parsing import BatchParser, ParseResult, RejectedRow
    from ctrflow.pipeline.stats import Profile
    from ctrflow.pipeline.transform import build_layout, make_preprocessing_fn

__all__ = ["FeatureLayout", "SparseFeature", "DenseFeature", "GlobalIndex", "BatchParser", "ParseResult",
           "RejectedRow", "make_preprocessing_fn", "build_layout", "Profile", "drift_report", "artifacts"]
__getattr__, __dir__ = lazy_exports(globals(), {
    "layout": ("FeatureLayout", "SparseFeature", "DenseFeature", "GlobalIndex"),
    "parsing": ("BatchParser", "ParseResult", "RejectedRow"),
    "transform": ("make_preprocessing_fn", "build_layout"),
    "stats": ("Profile",),
    "drift": ("drift_report",),
}, modules=("artifacts",))
