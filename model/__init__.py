"""Keras 3 CTR models (LR, Wide&Deep, DeepFM) built from a ``FeatureLayout``.

``__all__`` is the public API; its names load their module on first use, so
``import ctrflow.model.config`` (or ``ctrflow.model.ModelConfig``) does not load
TensorFlow.
"""
from typing import TYPE_CHECKING

from ctrflow.common.lazy_exports import lazy_exports

if TYPE_CHECKING:  # what static tools read; at run time each name loads its module on first use
    from ctrflow.model import evaluate, export, train, tune
    from ctrflow.model.artifact import ExportedModel, ModelMetadata, load_metadata
    from ctrflow.model.config import ModelConfig
    from ctrflow.model.models import build_model, compile_model
    from ctrflow.model.options import EvaluateOptions, TrainerOptions

__all__ = ["ModelConfig", "TrainerOptions", "EvaluateOptions", "build_model", "compile_model", "ModelMetadata",
           "ExportedModel", "load_metadata", "train", "evaluate", "export", "tune"]
__getattr__, __dir__ = lazy_exports(globals(), {
    "config": ("ModelConfig",),
    "options": ("TrainerOptions", "EvaluateOptions"),
    "models": ("build_model", "compile_model"),
    "artifact": ("ModelMetadata", "ExportedModel", "load_metadata"),
}, modules=("train", "evaluate", "export", "tune"))
