"""Every artifact file ctrflow writes or reads, named and loaded in one place.

Two folders cross job boundaries:

- a preprocess output (``PreprocessArtifacts``)::

      _LATEST                     the live version folder's name (see "Nothing is lost" in README)
      v=<run id>/_SUCCESS         the files of that version, written last
      v=<run id>/train/part-*.tfrecord.gz, eval/part-*.tfrecord.gz
      v=<run id>/transform_fn/, transformed_metadata/
      v=<run id>/layout.json, stats.json, schema.yaml, manifest.json, rejected/

  A folder written by an older ctrflow (no ``_LATEST``) is read as it is.
- an export (``ExportArtifacts``): ``saved_model.pb`` and ``assets.extra/``
  with ``schema.yaml``, ``layout.json``, ``stats.json``, ``model_info.json``.

Writers (preprocess, train/export, score) and readers (train, evaluate,
score) use these names, so a file cannot be renamed on one side only. Paths
may be local, ``gs://`` (Beam ``FileSystems``, which also honours a GCS
emulator) or any other TensorFlow filesystem such as ``ram://`` (``tf.io.gfile``).
"""
from __future__ import annotations

import dataclasses
import json
import os
from typing import Any

MANIFEST = "manifest.json"
LAYOUT = "layout.json"
STATS = "stats.json"
SCHEMA = "schema.yaml"
TRANSFORM_FN = "transform_fn"
TRANSFORMED_METADATA = "transformed_metadata"
REJECTED = "rejected"
EXPORT = "export"
ASSETS_EXTRA = "assets.extra"
MODEL_INFO = "model_info.json"
CONFIG = "config.json"
METRICS = "metrics.json"
SUCCESS = "_SUCCESS"  # a version folder is complete; lists its files (Hive/Spark convention)
LATEST = "_LATEST"  # names the live version folder of an output
VERSION_PREFIX = "v="


# ---------------------------------------------------------------- one file API

def _beam_scheme(path: str) -> bool:
    """Paths Beam's FileSystems serve (local, gs://, s3://, ...); others go through tf.io.gfile (ram://)."""
    if "://" not in path:
        return True
    from apache_beam.io.filesystems import FileSystems

    try:
        FileSystems.get_filesystem(path)
        return True
    except ValueError:
        return False


def read_bytes(path: str) -> bytes:
    if _beam_scheme(path):
        from apache_beam.io.filesystems import FileSystems

        with FileSystems.open(path) as f:
            return f.read()
    import tensorflow as tf

    with tf.io.gfile.GFile(path, "rb") as f:
        return f.read()


def write_bytes(path: str, data: bytes) -> None:
    """Writes a whole file; on object stores the object appears complete or not at all."""
    if _beam_scheme(path):
        from apache_beam.io.filesystems import FileSystems

        with FileSystems.create(path) as f:
            f.write(data)
        return
    import tensorflow as tf

    tf.io.gfile.makedirs(os.path.dirname(path))
    with tf.io.gfile.GFile(path, "wb") as f:
        f.write(data)


def exists(path: str) -> bool:
    if _beam_scheme(path):
        from apache_beam.io.filesystems import FileSystems

        return FileSystems.exists(path)
    import tensorflow as tf

    return tf.io.gfile.exists(path)


def read_text(path: str) -> str:
    return read_bytes(path).decode("utf-8")


def write_text(path: str, text: str) -> None:
    write_bytes(path, text.encode("utf-8"))


def read_json(path: str) -> Any:
    return json.loads(read_text(path))


def write_json(path: str, doc: Any) -> None:
    write_text(path, json.dumps(doc, indent=2, sort_keys=True, default=str))


def join(*parts: str) -> str:
    return os.path.join(*parts)


# ---------------------------------------------------------------- versioned outputs

def live_version(root: str) -> str | None:
    """The live version folder's name under ``root`` (from ``_LATEST``), or None for an unversioned folder."""
    pointer = join(root, LATEST)
    if not exists(pointer):
        return None
    return read_text(pointer).strip()


def live_dir(root: str) -> str:
    """The folder a reader should read: ``root/<live version>``, or ``root`` itself when unversioned."""
    root = root.rstrip("/")
    version = live_version(root)
    return join(root, version) if version else root


def success_files(version_dir: str) -> list[str]:
    """The files a published version holds (its ``_SUCCESS`` list), as full paths."""
    doc = read_json(join(version_dir, SUCCESS))
    return [join(version_dir, f["path"]) for f in doc["files"]]


# ---------------------------------------------------------------- preprocess output

@dataclasses.dataclass(frozen=True)
class PreprocessArtifacts:
    """The files of one preprocess output version (``dir``), for writers and readers."""

    dir: str

    @classmethod
    def live(cls, root: str) -> PreprocessArtifacts:
        """What a reader (train, evaluate) uses: the published version of ``root``."""
        return cls(live_dir(root))

    def path(self, name: str) -> str:
        return join(self.dir, name)

    def split_pattern(self, split: str) -> str:
        return join(self.dir, split, "part-*.tfrecord.gz")

    def split_prefix(self, split: str) -> str:
        return join(self.dir, split, "part")

    def rejected_prefix(self, split: str) -> str:
        return join(self.dir, REJECTED, split)

    def layout_text(self) -> str:
        return read_text(self.path(LAYOUT))

    def schema_text(self) -> str:
        return read_text(self.path(SCHEMA))

    def stats(self) -> dict | None:
        return read_json(self.path(STATS)) if exists(self.path(STATS)) else None

    def manifest(self) -> dict:
        return read_json(self.path(MANIFEST))

    def write_layout(self, text: str) -> None:
        write_text(self.path(LAYOUT), text)

    def write_schema(self, text: str) -> None:
        write_text(self.path(SCHEMA), text)

    def write_stats(self, doc: dict) -> None:
        write_json(self.path(STATS), doc)

    def write_manifest(self, doc: dict) -> None:
        write_json(self.path(MANIFEST), doc)


# ---------------------------------------------------------------- model export

@dataclasses.dataclass(frozen=True)
class ExportArtifacts:
    """The files beside an exported SavedModel (``dir`` holds ``saved_model.pb``)."""

    dir: str

    @classmethod
    def find(cls, model_path: str) -> ExportArtifacts:
        """Accepts a trainer output dir (MODEL_DIR) or the export dir itself."""
        for candidate in (model_path, join(model_path, EXPORT)):
            if exists(join(candidate, "saved_model.pb")):
                return cls(candidate)
        raise FileNotFoundError(f"--model {model_path}: no saved_model.pb there or in its {EXPORT}/ folder")

    def extra_path(self, name: str) -> str:
        return join(self.dir, ASSETS_EXTRA, name)

    def read_extra(self, name: str) -> str | None:
        path = self.extra_path(name)
        return read_text(path) if exists(path) else None

    def write_extra(self, files: dict[str, str]) -> None:
        for name, text in files.items():
            write_text(self.extra_path(name), text)
