"""Date partitions that are replaced atomically: never duplicated, never half-written.

A run writes into a private staging folder ``OUTPUT/_staging/date=D.<run id>``
and only after the pipeline succeeded ``publish`` swaps it into
``OUTPUT/date=D``: the previous partition is moved aside, the new one moved
in, the old one deleted. A failed run deletes its staging folder and leaves
the published partition untouched; runs for different dates touch disjoint
folders.
"""
from __future__ import annotations

import os
import uuid

from apache_beam.io.filesystems import FileSystems

STAGING = "_staging"
FAILED = "_failed"


def partition_dir(output: str, date: str) -> str:
    return os.path.join(output, f"date={date}")


def staging_dir(output: str, date: str) -> str:
    return os.path.join(output, STAGING, f"date={date}.{uuid.uuid4().hex[:12]}")


def _is_local(path: str) -> bool:
    return "://" not in path


def _move_tree(src: str, dst: str) -> None:
    """Moves a folder: one rename locally, per-file renames on object stores."""
    if _is_local(src):
        os.replace(src, dst)
        return
    files = [m.path for m in FileSystems.match([src.rstrip("/") + "/**"])[0].metadata_list]
    FileSystems.rename(files, [dst.rstrip("/") + f[len(src.rstrip("/")):] for f in files])


def publish(staging: str, final: str) -> None:
    """Replaces ``final`` with ``staging``."""
    old = None
    if FileSystems.exists(final):
        old = final.rstrip("/") + f".replaced.{uuid.uuid4().hex[:12]}"
        _move_tree(final, old)
    try:
        _move_tree(staging, final)
    except Exception:
        if old is not None:  # put the previous output back
            _move_tree(old, final)
        raise
    if old is not None:
        FileSystems.delete([old])
    _remove_if_empty(os.path.dirname(staging.rstrip("/")))


def _remove_if_empty(folder: str) -> None:
    """Removes the shared ``_staging`` folder once no run uses it (another run may be starting: fine)."""
    if _is_local(folder):
        try:
            os.rmdir(folder)
        except OSError:  # not empty (a concurrent run for another date) or already gone
            pass


def failed_dir(staging: str) -> str:
    """Where a failed run's staging folder is kept: ``OUTPUT/_failed/date=D.<run id>``."""
    output = os.path.dirname(os.path.dirname(staging.rstrip("/")))
    return os.path.join(output, FAILED, os.path.basename(staging.rstrip("/")))


def keep_failed(staging: str) -> str:
    """Moves a failed run's staging folder (rejected rows, manifest) aside for inspection."""
    target = failed_dir(staging)
    if _is_local(target):
        os.makedirs(os.path.dirname(target), exist_ok=True)
    _move_tree(staging, target)
    _remove_if_empty(os.path.dirname(staging.rstrip("/")))
    return target


def discard(staging: str) -> None:
    if FileSystems.exists(staging):
        FileSystems.delete([staging])
    _remove_if_empty(os.path.dirname(staging.rstrip("/")))
