"""``train --serving-base BASE``: the export again as ``BASE/<version>/``, the layout TF Serving loads.

TF Serving (``--model_base_path=BASE``) and Vertex AI prediction look for
integer-named folders under a base path and, by default, serve the highest
one. ``publish_version`` copies a finished export to ``BASE/<max existing + 1>``
(``1`` in a new base), so versions only grow; a folder whose name is not an
integer (``_incoming-*``, notes) is not a version for them or for us.

A poller must never see half a model. On a local disk the copy is written to
``BASE/_incoming-<random>/`` and renamed to its version in one step (if
another writer took that number meanwhile, the next one is taken). Object
stores (``gs://``) have no folder rename: the files are written straight into
``BASE/<version>/`` with ``saved_model.pb`` last, so until the copy ends the
folder is not a SavedModel and a load attempt fails and is retried (TF
Serving's ``max_num_load_retries``); give each base one writer at a time there.
"""
from __future__ import annotations

import logging
import os
import uuid

import tensorflow as tf

from ctrflow.pipeline import artifacts as af

GRAPH_FILE = af.SAVED_MODEL  # copied last: a folder without it is not a SavedModel yet
_STAGING_PREFIX = "_incoming-"
_ATTEMPTS = 100


def versions(base: str) -> list[int]:
    """The version numbers under ``base``, ascending (none when ``base`` does not exist)."""
    if not tf.io.gfile.isdir(base):
        return []
    names = (n.rstrip("/") for n in tf.io.gfile.listdir(base))
    return sorted(int(n) for n in names if n.isdigit() and tf.io.gfile.isdir(os.path.join(base, n)))


def _copy_tree(src: str, dst: str) -> None:
    """Copies every file of ``src`` under ``dst``, ``saved_model.pb`` last."""
    files = []
    for folder, _, names in tf.io.gfile.walk(src):
        rel = os.path.relpath(folder, src)
        files += [os.path.normpath(os.path.join(rel, n)) for n in names]
    if GRAPH_FILE not in files:
        raise FileNotFoundError(f"{src}: no {GRAPH_FILE}; not a SavedModel")
    files.sort(key=lambda f: (f == GRAPH_FILE, f))
    for rel in files:
        target = os.path.join(dst, rel)
        tf.io.gfile.makedirs(os.path.dirname(target))
        tf.io.gfile.copy(os.path.join(src, rel), target, overwrite=True)


def publish_version(export_dir: str, base: str) -> str:
    """Copies the SavedModel ``export_dir`` to ``base/<max existing version + 1>/``; returns that folder."""
    tf.io.gfile.makedirs(base)
    if "://" in base:  # no atomic rename: write in place, the graph last
        target = os.path.join(base, str(max(versions(base), default=0) + 1))
        _copy_tree(export_dir, target)
        logging.info("serving version %s written", target)
        return target
    staging = os.path.join(base, f"{_STAGING_PREFIX}{uuid.uuid4().hex}")
    _copy_tree(export_dir, staging)
    try:
        for _ in range(_ATTEMPTS):
            target = os.path.join(base, str(max(versions(base), default=0) + 1))
            try:
                os.rename(staging, target)  # fails when another writer filled that version first
            except OSError:
                if not tf.io.gfile.isdir(target):
                    raise
                continue
            logging.info("serving version %s written", target)
            return target
        raise RuntimeError(f"{base}: no free version number after {_ATTEMPTS} attempts")
    finally:
        if tf.io.gfile.isdir(staging):
            tf.io.gfile.rmtree(staging)
