"""Reading an exported model: its metadata without TensorFlow, the SavedModel on demand.

``ctrflow score`` plans its reads from the schema and layout that travel in
``assets.extra/`` and only then needs the graph; keeping this module free of
top-level TensorFlow / tf.Transform imports lets the job read the metadata at
once and load the SavedModel in the background while Beam starts (importing
tensorflow_transform is slow, and scoring never needs it:
the transform graph is plain TensorFlow ops inside the SavedModel).
"""
from __future__ import annotations

import dataclasses
import json
import os
from typing import Callable, Optional

from ctrflow.common.compat.tensorflow import import_tensorflow
from ctrflow.common.errors import UserError
from ctrflow.pipeline import artifacts as af
from ctrflow.pipeline.layout import FeatureLayout
from ctrflow.schemas import Schema, loads_schema

ReadText = Callable[[str], Optional[str]]  # path -> text, or None when the file does not exist
Exists = Callable[[str], bool]


class ModelNotFoundError(UserError, FileNotFoundError):
    """``--model`` names no ctrflow export: a path to fix, not a crash."""


@dataclasses.dataclass
class ModelMetadata:
    """What travels beside the graph: read without loading the SavedModel."""

    path: str  # the export dir
    schema: Schema
    layout: FeatureLayout
    info: dict
    train_stats: dict | None

    @property
    def version(self) -> str:
        return self.info.get("version", "unknown")


@dataclasses.dataclass
class ExportedModel:
    """A loaded serving model with its metadata."""

    meta: ModelMetadata
    loaded: object
    partial: bool = False  # only some objects loaded (``load_parts``): other signatures are absent

    @property
    def info(self) -> dict:
        return self.meta.info

    def signature(self, name: str = "serving_default"):
        return self.loaded.signatures[name]


def gfile_read_text(path: str) -> str | None:
    """Reads a local or ``gs://`` file through tf.io.gfile (imports TensorFlow)."""
    tf = import_tensorflow()

    if not tf.io.gfile.exists(path):
        return None
    with tf.io.gfile.GFile(path) as f:
        return f.read()


def gfile_exists(path: str) -> bool:
    return import_tensorflow().io.gfile.exists(path)


def find_export_dir(model_path: str, exists: Exists = gfile_exists) -> str:
    """Accepts a trainer output dir (MODEL_DIR) or the export dir itself."""
    for candidate in (model_path, os.path.join(model_path, af.EXPORT)):
        if exists(os.path.join(candidate, af.SAVED_MODEL)):
            return candidate
    raise ModelNotFoundError(f"--model {model_path}: no {af.SAVED_MODEL} there or in its {af.EXPORT}/ folder")


def read_extra(export_dir: str, name: str, read_text: ReadText = gfile_read_text) -> str | None:
    """A file of the export's ``assets.extra/``, or None when it is absent."""
    return read_text(af.ExportArtifacts(export_dir).extra_path(name))


def load_metadata(model_path: str, read_text: ReadText = gfile_read_text,
                  exists: Exists = gfile_exists) -> ModelMetadata:
    """Schema, layout, version and training baseline of an export.

    ``read_text``/``exists`` access the files (tf.io.gfile by default; the
    Beam jobs pass Beam's FileSystems so that no TensorFlow import is needed).
    """
    export_dir = find_export_dir(model_path, exists)
    schema_text = read_extra(export_dir, af.SCHEMA, read_text)
    if schema_text is None:
        raise ModelNotFoundError(f"{export_dir}: {af.ASSETS_EXTRA}/{af.SCHEMA} is missing; was it exported by "
                                "ctrflow?")
    stats = read_extra(export_dir, af.STATS, read_text)
    return ModelMetadata(
        path=export_dir,
        schema=loads_schema(schema_text, af.ExportArtifacts(export_dir).extra_path(af.SCHEMA)),
        layout=FeatureLayout.from_json(read_extra(export_dir, af.LAYOUT, read_text)),
        info=json.loads(read_extra(export_dir, af.MODEL_INFO, read_text) or "{}"),
        train_stats=json.loads(stats) if stats else None,
    )


def load(model_path: str, meta: ModelMetadata | None = None) -> ExportedModel:
    """Loads the SavedModel (``tf.saved_model.load``, without TensorFlow's ``__init__`` where possible) + metadata."""
    from ctrflow.common.compat.tensorflow import serving_runtime

    meta = meta or load_metadata(model_path)
    return ExportedModel(meta=meta, loaded=serving_runtime().load_saved_model(meta.path))


class PartialExport:
    """Objects of a SavedModel loaded alone, reached as on a whole load: ``.transform``, ``.signatures[name]``."""

    def __init__(self, objects: dict[str, object]):
        self.signatures: dict[str, object] = {}
        for path, obj in objects.items():
            parts = path.split(".")
            if parts[:2] == ["root", "signatures"] and len(parts) == 3:
                self.signatures[parts[2]] = obj
            elif len(parts) == 2 and parts[0] == "root":
                setattr(self, parts[1], obj)
            else:
                raise ValueError(f"{path}: only root.<attribute> and root.signatures.<name> are supported")


def load_parts(meta: ModelMetadata, paths: tuple[str, ...]) -> ExportedModel:
    """Only the export's objects at ``paths`` and what they need (``compat.tensorflow.load_saved_model_parts``)."""
    from ctrflow.common.compat.tensorflow import load_saved_model_parts

    return ExportedModel(meta=meta, loaded=PartialExport(load_saved_model_parts(meta.path, paths)), partial=True)
