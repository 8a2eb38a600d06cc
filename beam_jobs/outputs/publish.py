"""All-or-nothing publishing of a job's output, on local disk and on object stores.

Renaming a folder is one atomic step on a local disk but a copy + delete per
file on ``gs://``, so a reader listing a folder mid-rename sees half of it.
Instead every run writes into a fresh *version folder* that no reader looks
at, and publishing is one small object write at the end::

    ROOT/v=<run id>/...            1. the job writes its files here (readers ignore it)
    ROOT/v=<run id>/_SUCCESS       2. written once every file is complete: the list of files with sizes
    ROOT/_LATEST                   3. one write naming ``v=<run id>``: the new version is live

A reader reads ``ROOT/_LATEST`` and then only the files listed in that
version's ``_SUCCESS`` (``pipeline.artifacts.live_dir`` / ``success_files``).
Before step 3 it sees the previous version, after it the new one, at no
moment a mix or nothing: a single object write is atomic on GCS and S3, and
locally the pointer is written beside and renamed over (``rename(2)``).
The previous live version is kept (a reader that resolved the pointer just
before the switch can finish); older published versions are deleted after
the switch. A run that fails deletes its version folder; a version folder
without ``_SUCCESS`` is a killed run's leftover and is never read.

``ROOT`` is ``OUTPUT/date=YYYY-MM-DD`` for ``score`` and ``OUTPUT`` for ``preprocess``.
"""
from __future__ import annotations

import datetime
import json
import logging
import os
import uuid

from apache_beam.io.filesystems import FileSystems

from ctrflow.pipeline import artifacts as af

log = logging.getLogger(__name__)

def before_step(step: str) -> None:
    """Called with the step name ("success", "pointer") just before that step of ``publish``.

    A test seam: a test replaces it to kill a publish half-way and show what a reader sees then.
    """


def new_version_dir(root: str) -> str:
    """A fresh version folder under ``root``: ``v=<UTC time>-<random>`` (sorts by start time)."""
    now = datetime.datetime.now(datetime.UTC)
    return af.join(root.rstrip("/"), f"{af.VERSION_PREFIX}{now:%Y%m%dT%H%M%S}-{uuid.uuid4().hex[:8]}")


def list_files(folder: str) -> list[tuple[str, int]]:
    """(path relative to ``folder``, size) of every file under it, sorted; [] for a folder that is not there."""
    folder = folder.rstrip("/")
    try:
        found = FileSystems.match([folder + "/**"])[0].metadata_list
    except Exception:  # noqa: BLE001 - Beam raises BeamIOError for a local folder that does not exist
        return []
    return sorted((m.path[len(folder) + 1:], m.size_in_bytes) for m in found if m.path != folder)


def delete_folder(folder: str) -> None:
    """Deletes a folder and everything under it (on object stores: every object under the prefix)."""
    folder = folder.rstrip("/")
    if "://" in folder:
        if list_files(folder):
            FileSystems.delete([folder + "/"])
    elif FileSystems.exists(folder):
        FileSystems.delete([folder])


def _write_pointer(root: str, version: str) -> None:
    pointer = af.join(root, af.LATEST)
    if "://" in root:  # one object write: atomic on object stores
        af.write_text(pointer, version + "\n")
        return
    tmp = af.join(root, f".{af.LATEST}.{uuid.uuid4().hex[:8]}")
    af.write_text(tmp, version + "\n")
    os.replace(tmp, pointer)  # atomic on POSIX, replaces the old pointer


def publish(version_dir: str) -> dict:
    """Makes ``version_dir`` the live version of its parent folder; returns its ``_SUCCESS`` document."""
    version_dir = version_dir.rstrip("/")
    root, version = os.path.dirname(version_dir), os.path.basename(version_dir)
    previous = af.live_version(root)
    files = [(p, n) for p, n in list_files(version_dir) if p != af.SUCCESS]
    doc = {"version": version, "published_at": datetime.datetime.now(datetime.UTC).isoformat(),
           "files": [{"path": p, "size": n} for p, n in files]}
    before_step("success")
    af.write_text(af.join(version_dir, af.SUCCESS), json.dumps(doc, indent=2))
    before_step("pointer")
    _write_pointer(root, version)
    log.info("published %s (%d files) as the live version of %s", version, len(files), root)
    _delete_superseded(root, keep={version, previous})
    return doc


def _delete_superseded(root: str, keep: set[str | None]) -> None:
    """Deletes published versions other than ``keep``; folders still being written (no _SUCCESS) stay."""
    for path in versions(root):
        name = os.path.basename(path)
        if name not in keep and FileSystems.exists(af.join(path, af.SUCCESS)):
            try:
                delete_folder(path)
            except Exception:
                log.warning("could not delete the superseded version %s", path, exc_info=True)


def versions(root: str) -> list[str]:
    """Version folders under ``root`` (published or not), oldest first."""
    root = root.rstrip("/")
    names = {path.split("/")[0] for path, _ in list_files(root)}
    return [af.join(root, n) for n in sorted(names) if n.startswith(af.VERSION_PREFIX)]


def discard(version_dir: str) -> None:
    """Deletes a failed run's version folder (never the live one)."""
    delete_folder(version_dir)
