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

A run killed outright (``kill -9``, a lost machine) cannot delete its folder,
so a run in progress holds a *lease* on it: ``v=<run id>/_LEASE`` (host, pid,
expiry), rewritten every ``RENEW_SECONDS`` with an expiry ``LEASE_SECONDS``
ahead, and deleted just before ``_SUCCESS`` is written. Every run, before it
starts its own folder, removes the *abandoned* ones of the same ``ROOT``, one
log line each: no ``_SUCCESS``, and a lease that ran out, or no lease (an
older ctrflow's run, or a failed run kept for inspection) and no file written
for ``UNLEASED_MAX_AGE_SECONDS``. A live lease or a ``_SUCCESS`` is never
touched. Only files are compared (object stores have no folder times), so
this works the same on ``gs://``. A run whose folder was removed while it was
stopped that long finds its lease gone and fails instead of publishing.

``ROOT`` is ``OUTPUT/date=YYYY-MM-DD`` for ``score`` and ``OUTPUT`` for ``preprocess``.
"""
from __future__ import annotations

import datetime
import json
import logging
import os
import socket
import threading
import time
import uuid

from apache_beam.io.filesystems import FileSystems

from ctrflow.pipeline import artifacts as af

log = logging.getLogger(__name__)

LEASE_SECONDS = 15 * 60  # a lease not renewed for this long belongs to a run that is gone
RENEW_SECONDS = 60  # how often a run in progress renews it: 14 minutes of slack for a stalled host or clock skew
UNLEASED_MAX_AGE_SECONDS = 24 * 3600  # a folder without _SUCCESS nor lease, untouched this long, is abandoned


def before_step(step: str) -> None:
    """Called with the step name ("success", "pointer") just before that step of ``publish``.

    A test seam: a test replaces it to kill a publish half-way and show what a reader sees then.
    """


def new_version_dir(root: str) -> str:
    """This run's fresh version folder under ``root``, leased: ``v=<UTC time>-<random>`` (sorts by start time).

    The abandoned version folders of ``root`` are removed first (``remove_abandoned``).
    """
    remove_abandoned(root)
    now = datetime.datetime.now(datetime.UTC)
    version_dir = af.join(root.rstrip("/"), f"{af.VERSION_PREFIX}{now:%Y%m%dT%H%M%S}-{uuid.uuid4().hex[:8]}")
    lease = _Lease(version_dir, LEASE_SECONDS, RENEW_SECONDS)
    with _LOCK:
        _LEASES[version_dir] = lease
    return version_dir


class LeaseLost(RuntimeError):
    """This run's version folder was taken for abandoned (its lease ran out while the run was stopped)."""


def _iso(unix: float) -> str:
    return datetime.datetime.fromtimestamp(unix, datetime.UTC).isoformat(timespec="seconds")


class _Lease:
    """A run's ``_LEASE`` in its version folder, renewed by a daemon thread until ``release``."""

    def __init__(self, version_dir: str, seconds: float, renew_every: float):
        self.path = af.join(version_dir, af.LEASE)
        self.run = uuid.uuid4().hex  # tells this run's lease from any other
        self.seconds = seconds
        self.lost = False
        self._stop = threading.Event()
        self._write()
        self._thread = threading.Thread(target=self._renew, args=(renew_every,), daemon=True,
                                        name=f"lease {version_dir}")
        self._thread.start()

    def _write(self) -> None:
        now = time.time()
        af.write_text(self.path, json.dumps({
            "run": self.run, "host": socket.gethostname(), "pid": os.getpid(), "renewed_at": _iso(now),
            "expires_at": _iso(now + self.seconds), "expires": now + self.seconds}, indent=2))

    def ours(self) -> bool:
        try:
            return af.read_json(self.path).get("run") == self.run
        except Exception:  # noqa: BLE001 - gone (the folder was removed) or unreadable: not ours any more
            return False

    def _renew(self, every: float) -> None:
        while not self._stop.wait(every):
            if not self.ours():
                self.lost = True
                log.warning("the lease of %s is gone: this run's version folder was removed as abandoned",
                            self.path)
                return
            try:
                self._write()
            except Exception as e:  # noqa: BLE001 - a transient store error: the next renewal tries again
                log.warning("could not renew %s (%s: %s)", self.path, type(e).__name__, e)

    def release(self) -> bool:
        """Stops renewing and deletes the lease; False when it was no longer this run's."""
        self._stop.set()
        self._thread.join(timeout=60)
        ours = not self.lost and self.ours()
        if ours:
            FileSystems.delete([self.path])
        return ours


_LOCK = threading.Lock()
_LEASES: dict[str, _Lease] = {}  # version folder -> this process's lease on it


def release(version_dir: str) -> bool:
    """Ends this run's lease on ``version_dir`` (no-op without one); False when the lease had been lost.

    A failed run that keeps its folder for inspection releases it: the folder
    is then removed as abandoned once it is ``UNLEASED_MAX_AGE_SECONDS`` old.
    """
    with _LOCK:
        lease = _LEASES.pop(version_dir.rstrip("/"), None)
    return lease.release() if lease is not None else True


def remove_abandoned(root: str, max_age: float = UNLEASED_MAX_AGE_SECONDS) -> list[str]:
    """Deletes the abandoned version folders of ``root`` (see the module docstring); returns them.

    Never one with ``_SUCCESS``, the live one, one leased by this process, or
    one whose lease has not run out. A folder that cannot be deleted is logged
    and left for the next run.
    """
    root = root.rstrip("/")
    now, live = time.time(), af.live_version(root)
    removed = []
    for name, written in _version_files(root).items():
        path = af.join(root, name)
        with _LOCK:
            ours = path in _LEASES
        if name == live or af.SUCCESS in written or ours:
            continue
        reason = _abandoned(path, written, now, max_age)
        if reason is None:
            continue
        try:
            delete_folder(path)
        except Exception as e:  # noqa: BLE001 - cleanup must not fail the run
            log.warning("could not remove the abandoned version folder %s (%s: %s)", path, type(e).__name__, e)
            continue
        log.info("removed the abandoned version folder %s (%s)", path, reason)
        removed.append(path)
    return removed


def _abandoned(path: str, written: dict[str, float], now: float, max_age: float) -> str | None:
    """Why the unpublished folder ``path`` is abandoned, or None while its run may still be going."""
    if af.LEASE in written:
        try:
            expires = float(af.read_json(af.join(path, af.LEASE))["expires"])
        except Exception:  # noqa: BLE001 - being rewritten right now, or damaged: judged by its age below
            expires = None
        if expires is not None:
            return f"no {af.SUCCESS}; its lease ran out at {_iso(expires)}" if expires < now else None
    last = max(written.values(), default=0.0) or _started(os.path.basename(path))
    if last and now - last > max_age:
        return f"no {af.SUCCESS}, no lease, nothing written since {_iso(last)}"
    return None


def _started(name: str) -> float:
    """The start time in a version folder's name (``v=20261121T020111-3ee36a4c``), 0 if it has none."""
    try:
        stamp = datetime.datetime.strptime(name[len(af.VERSION_PREFIX):].split("-")[0], "%Y%m%dT%H%M%S")
    except ValueError:
        return 0.0
    return stamp.replace(tzinfo=datetime.UTC).timestamp()


def _version_files(root: str) -> dict[str, dict[str, float]]:
    """{version folder name: {path inside it: last written (unix s, 0 if unknown)}} under ``root``."""
    try:
        found = FileSystems.match([root + "/**"])[0].metadata_list
    except Exception:  # noqa: BLE001 - Beam raises BeamIOError for a local folder that does not exist
        return {}
    versions: dict[str, dict[str, float]] = {}
    for m in found:
        name, _, inside = m.path[len(root) + 1:].partition("/")
        if name.startswith(af.VERSION_PREFIX) and inside:
            versions.setdefault(name, {})[inside] = float(getattr(m, "last_updated_in_seconds", 0.0) or 0.0)
    return versions


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
    if not release(version_dir):
        raise LeaseLost(f"{version_dir} was removed as abandoned while this run was stopped (its lease ran out); "
                        "nothing was published")
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
    release(version_dir)
    delete_folder(version_dir)
