"""Reading an exported model: its metadata without TensorFlow, the SavedModel on demand.

``ctrflow score`` plans its reads from the schema and layout that travel in
``assets.extra/`` and only then needs the graph; keeping this module free of
top-level TensorFlow / tf.Transform imports lets the job read the metadata at
once and load the SavedModel in the background while Beam starts (importing
tensorflow_transform alone costs about 1.5 s, and scoring never needs it:
the transform graph is plain TensorFlow ops inside the SavedModel).
"""
from __future__ import annotations

import contextlib
import dataclasses
import json
import os
import sys
from typing import Callable, Iterator, Optional

from ctrflow.pipeline.layout import FeatureLayout
from ctrflow.schemas import Schema, loads_schema

EXTRA = "assets.extra"
SCHEMA_FILE, LAYOUT_FILE, STATS_FILE, INFO_FILE = "schema.yaml", "layout.json", "stats.json", "model_info.json"

ReadText = Callable[[str], Optional[str]]  # path -> text, or None when the file does not exist
Exists = Callable[[str], bool]


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


def import_tensorflow():
    """``import tensorflow``, skipping its eager import of Keras when Keras is not loaded yet.

    TensorFlow's ``__init__`` imports ``keras.src.optimizers`` (all of Keras 3,
    matplotlib included; ``tf_keras.src.optimizers`` with TF_USE_LEGACY_KERAS=1)
    inside ``try/except ImportError`` only to register optimizers for
    SavedModels that hold them; a serving export holds none. Marking those
    modules absent for the duration of the import saves about a third of the
    import's CPU time (2.2 of 7.8 s measured on a busy 2-core machine); the
    marks are removed afterwards, so a later ``import keras`` in the same
    process works as usual.
    """
    if "tensorflow" in sys.modules:
        # an import statement, not the sys.modules entry: while another thread is still importing TensorFlow
        # the entry is a partially initialised module, and the import statement waits for it to finish
        import tensorflow as tf

        return tf
    with blocked_eager_keras():
        import tensorflow as tf
    return tf


_EAGER_KERAS = ("keras.src.optimizers", "tf_keras.src.optimizers")


@contextlib.contextmanager
def blocked_eager_keras() -> Iterator[None]:
    """TensorFlow's eager Keras imports marked absent while its ``__init__`` runs (see ``import_tensorflow``)."""
    blocked = [m for m in _EAGER_KERAS if m not in sys.modules]
    for name in blocked:
        sys.modules[name] = None  # type: ignore[assignment]
    try:
        yield
    finally:
        for name in blocked:
            if name in sys.modules and sys.modules[name] is None:
                del sys.modules[name]


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
    for candidate in (model_path, os.path.join(model_path, "export")):
        if exists(os.path.join(candidate, "saved_model.pb")):
            return candidate
    raise FileNotFoundError(f"--model {model_path}: no saved_model.pb there or in its export/ folder")


def read_extra(export_dir: str, name: str, read_text: ReadText = gfile_read_text) -> str | None:
    return read_text(os.path.join(export_dir, EXTRA, name))


def load_metadata(model_path: str, read_text: ReadText = gfile_read_text,
                  exists: Exists = gfile_exists) -> ModelMetadata:
    """Schema, layout, version and training baseline of an export.

    ``read_text``/``exists`` access the files (tf.io.gfile by default; the
    Beam jobs pass Beam's FileSystems so that no TensorFlow import is needed).
    """
    export_dir = find_export_dir(model_path, exists)
    schema_text = read_extra(export_dir, SCHEMA_FILE, read_text)
    if schema_text is None:
        raise FileNotFoundError(f"{export_dir}: {EXTRA}/{SCHEMA_FILE} is missing; was it exported by ctrflow?")
    stats = read_extra(export_dir, STATS_FILE, read_text)
    return ModelMetadata(
        path=export_dir,
        schema=loads_schema(schema_text, os.path.join(export_dir, EXTRA, SCHEMA_FILE)),
        layout=FeatureLayout.from_json(read_extra(export_dir, LAYOUT_FILE, read_text)),
        info=json.loads(read_extra(export_dir, INFO_FILE, read_text) or "{}"),
        train_stats=json.loads(stats) if stats else None,
    )


def load(model_path: str, meta: ModelMetadata | None = None) -> ExportedModel:
    """Loads the SavedModel (``tf.saved_model.load`` without TensorFlow's ``__init__``: ``serving_tf``) + metadata."""
    from ctrflow.model.serving_tf import runtime

    meta = meta or load_metadata(model_path)
    return ExportedModel(meta=meta, loaded=runtime().load_saved_model(meta.path))


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
    """Only the export's objects at ``paths`` and what they need (``serving_tf.load_saved_model_parts``)."""
    from ctrflow.model.serving_tf import load_saved_model_parts, runtime

    runtime()  # TensorFlow's serving slice imported (lean where possible) before its internals are used
    return ExportedModel(meta=meta, loaded=PartialExport(load_saved_model_parts(meta.path, paths)), partial=True)
