"""Every artifact file and folder name ctrflow writes or reads, and the one file API.

Each name is defined here once; writers and readers use the constants, so a
file cannot be renamed on one side only (``tests/test_artifact_names.py``
fails on a quoted name anywhere else in the package). The folders:

- a preprocess output (``PreprocessArtifacts``)::

      _LATEST                     the live version folder's name (see "Nothing is lost" in README)
      v=<run id>/_SUCCESS         the files of that version, written last
      v=<run id>/train/part-*.tfrecord.gz, eval/part-*.tfrecord.gz
      v=<run id>/transform_fn/ (vocabularies in its assets/), transformed_metadata/
      v=<run id>/layout.json, stats.json, schema.yaml, manifest.json, analysis.json, rejected/

  A folder written by an older ctrflow (no ``_LATEST``) is read as it is.
- a trainer output (MODEL_DIR): ``export/``, ``checkpoints/`` (``final.weights.h5``,
  ``best.weights.h5``, ``backup/``), ``logs/``, ``members/<k>/`` (ensemble members),
  ``metrics.json``, ``config.json``, ``promotion.json``, ``evaluation/<split>/``.
- an export (``ExportArtifacts``): ``saved_model.pb``, ``assets/`` (vocabularies) and
  ``assets.extra/`` with ``schema.yaml``, ``layout.json``, ``stats.json``, ``model_info.json``.
- a score output: ``date=D/v=<run id>/`` with ``part-*`` score files, ``manifest.json``,
  ``profile.json``, ``score_profile.json``, ``drift.json``, ``drift.html``, ``rejected/``;
  failed runs under ``_failed/``.
- evaluation, tune, monitor, the per-day analysis cache and the demo: see their sections below.

Paths may be local, ``gs://`` (Beam ``FileSystems``, which also honours a GCS
emulator) or any other TensorFlow filesystem such as ``ram://`` (``tf.io.gfile``).
"""
from __future__ import annotations

import dataclasses
import json
import os
from typing import Any

# ---------------------------------------------------------------- versioned outputs (publish)
SUCCESS = "_SUCCESS"  # a version folder is complete; lists its files (Hive/Spark convention)
LATEST = "_LATEST"  # names the live version folder of an output
LEASE = "_LEASE"  # in a version folder: the run writing it is alive until the expiry it holds
VERSION_PREFIX = "v="  # v=<run id>: one run's version folder
DATE_PREFIX = "date="  # date=YYYY-MM-DD: a day's partition (score output, monitor, analysis cache)
FAILED = "_failed"  # score output: runs refused for too many rejected rows, kept for inspection
PART_PREFIX = "part"  # Beam's shard files: part-00000-of-00004...
TFRECORD_SUFFIX = ".tfrecord.gz"

# ---------------------------------------------------------------- preprocess output
MANIFEST = "manifest.json"  # also a score run's
LAYOUT = "layout.json"
STATS = "stats.json"
SCHEMA = "schema.yaml"
ANALYSIS = "analysis.json"  # bucket boundaries / scaling fixed up front (--base, --analysis-cache)
TRANSFORM_FN = "transform_fn"
TRANSFORMED_METADATA = "transformed_metadata"
REJECTED = "rejected"  # also a score run's
SPLIT_FILES = f"{PART_PREFIX}-*{TFRECORD_SUFFIX}"  # a split's files, under <split>/

# ---------------------------------------------------------------- SavedModel (export, transform_fn)
SAVED_MODEL = "saved_model.pb"
SAVED_MODEL_ASSETS = "assets"  # the vocabularies (tf.Transform's and the export's)
TRANSFORM_ASSETS = f"{TRANSFORM_FN}/{SAVED_MODEL_ASSETS}"  # a preprocess output's vocabularies
ASSETS_EXTRA = "assets.extra"
MODEL_INFO = "model_info.json"

# ---------------------------------------------------------------- trainer output (MODEL_DIR)
EXPORT = "export"
CHECKPOINTS = "checkpoints"
FINAL_WEIGHTS = "final.weights.h5"  # what --warm-start, --baseline and evaluate load
BEST_WEIGHTS = "best.weights.h5"  # the best epoch so far (ModelCheckpoint)
RESUME_BACKUP = "backup"  # under checkpoints/: --resume's BackupAndRestore
LOGS = "logs"  # TensorBoard
MEMBERS = "members"  # members/<k>/: ensemble member k > 0 (checkpoints/ of its own)
CONFIG = "config.json"
METRICS = "metrics.json"  # also evaluate's and monitor's per date
PROMOTION = "promotion.json"
EVALUATION = "evaluation"  # evaluate's default output: MODEL_DIR/evaluation/<split>/

# ---------------------------------------------------------------- evaluate output
ROC_PLOT = "roc.png"
CALIBRATION_PLOT = "calibration.png"
IMPORTANCE = "importance.json"
IMPORTANCE_PLOT = "importance.png"
EVALUATION_HTML = "index.html"  # the figures, plots and slices table on one page

# ---------------------------------------------------------------- tune output
TRIALS = "trials"  # trials/<i>/: one MODEL_DIR per trial
TRIALS_CSV = "trials.csv"
TRIALS_JSON = "trials.json"
BEST_TRIAL = "best.json"

# ---------------------------------------------------------------- score output (date=D/v=<run id>/)
SCORE_FILES = f"{PART_PREFIX}-*"  # whatever --output-format
SCORE_PARQUET_FILES = f"{PART_PREFIX}-*.parquet"
PROFILE = "profile.json"  # the day's feature profile
ROW_COUNTS = "row_counts.json"  # a run's rows read, written and rejected per split, counted as data (not metrics)
SCORE_PROFILE = "score_profile.json"  # the day's score histogram
DRIFT = "drift.json"
DRIFT_HTML = "drift.html"

# ---------------------------------------------------------------- analysis cache (DIR/<key>/date=D/)
NUMERIC_SUMMARY = "numeric.json"
VOCAB_COUNTS_SUFFIX = ".arrow"  # <vocabulary name>.arrow: (token, count) of the day

# ---------------------------------------------------------------- monitor and demo outputs
MONITOR = "monitor.json"
MONITOR_HTML = "index.html"
DEMO_SUMMARY = "demo_summary.json"


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

def date_partition(root: str, date: str) -> str:
    """``root/date=<date>``: a day's partition."""
    return join(root, f"{DATE_PREFIX}{date}")


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
        return join(self.dir, split, SPLIT_FILES)

    def split_prefix(self, split: str) -> str:
        return join(self.dir, split, PART_PREFIX)

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

    def extra_path(self, name: str) -> str:
        return join(self.dir, ASSETS_EXTRA, name)

    def write_extra(self, files: dict[str, str]) -> None:
        for name, text in files.items():
            write_text(self.extra_path(name), text)


# ---------------------------------------------------------------- trainer output

@dataclasses.dataclass(frozen=True)
class ModelDirArtifacts:
    """The files of a trainer output (MODEL_DIR): train writes them; warm start, the gate and evaluate read them."""

    dir: str

    def path(self, name: str) -> str:
        return join(self.dir, name)

    @property
    def export_dir(self) -> str:
        return join(self.dir, EXPORT)

    def member_dir(self, k: int) -> str:
        """Ensemble member 0 writes where a single model does; member k > 0 under ``members/k``."""
        return self.dir if k == 0 else join(self.dir, MEMBERS, str(k))

    def checkpoint(self, name: str = FINAL_WEIGHTS, member: int = 0) -> str:
        """``checkpoints/<name>`` of ensemble member ``member`` (final weights hold its Platt parameters)."""
        return join(self.member_dir(member), CHECKPOINTS, name)
