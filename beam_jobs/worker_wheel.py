"""A wheel of the installed ctrflow distribution, for remote workers (``--extra_package``).

Installed from a wheel, ctrflow has no ``setup.py`` to stage, and the wheel
the user installed from is gone. Its files are all still there, listed in the
distribution's RECORD: this module zips them back into a wheel (fresh RECORD
with sha256 digests, installer-specific files left out) in a temporary folder,
once per process, at job start and only for remote runners.
"""
from __future__ import annotations

import base64
import functools
import hashlib
import os
import tempfile
import zipfile
from importlib import metadata

from ctrflow.common.errors import UserError

DISTRIBUTION = "ctrflow"
# written by the installer about this machine's install, not part of the distribution
_INSTALLER_FILES = {"INSTALLER", "REQUESTED", "direct_url.json", "RECORD"}


class StagingError(UserError):
    """ctrflow cannot be shipped to remote workers from this install."""


def _record_hash(data: bytes) -> str:
    digest = base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode("ascii")
    return f"sha256={digest}"


def _wheel_members(dist: metadata.Distribution) -> list[tuple[str, str]]:
    """(archive name, installed path) of the distribution's own files."""
    members = []
    for f in dist.files or []:
        name = f.as_posix()
        parts = name.split("/")
        if name.startswith("..") or "__pycache__" in parts or name.endswith(".pyc"):
            continue  # console scripts live outside site-packages; byte code is the installer's
        if parts[0].endswith(".dist-info") and parts[-1] in _INSTALLER_FILES:
            continue
        members.append((name, str(f.locate())))
    return members


def build_installed_wheel(out_dir: str, dist: metadata.Distribution | None = None) -> str:
    """Writes ``ctrflow-VERSION-py3-none-any.whl`` from the installed files; returns its path."""
    dist = dist or metadata.distribution(DISTRIBUTION)
    members = _wheel_members(dist)
    names = {name for name, _ in members}
    if "ctrflow/beam_jobs/options.py" not in names:
        raise StagingError(
            "cannot stage ctrflow to remote workers: this install has neither a checkout's setup.py nor the "
            "installed package files (an editable install of a moved checkout?); give --setup_file, "
            "--extra_package or --sdk_container_image")
    version = dist.version
    info_dir = f"{DISTRIBUTION}-{version}.dist-info"
    if f"{info_dir}/WHEEL" not in names:
        raise StagingError(f"cannot stage ctrflow: {info_dir}/WHEEL is missing from the installed distribution")
    path = os.path.join(out_dir, f"{DISTRIBUTION}-{version}-py3-none-any.whl")
    record = []
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_DEFLATED) as whl:
        for name, source in sorted(members):
            with open(source, "rb") as f:  # the local site-packages, never a remote path
                data = f.read()
            whl.writestr(name, data)
            record.append(f"{name},{_record_hash(data)},{len(data)}")
        record.append(f"{info_dir}/RECORD,,")
        whl.writestr(f"{info_dir}/RECORD", "\n".join(record) + "\n")
    return path


@functools.lru_cache(maxsize=1)
def installed_wheel() -> str:
    """The wheel of the installed ctrflow, built once per process into a temporary folder."""
    try:
        dist = metadata.distribution(DISTRIBUTION)
    except metadata.PackageNotFoundError:
        raise StagingError("cannot stage ctrflow to remote workers: it is neither a checkout nor an installed "
                           "distribution; give --setup_file, --extra_package or --sdk_container_image") from None
    return build_installed_wheel(tempfile.mkdtemp(prefix="ctrflow-stage-"), dist)
