"""Date partitions of the score job, published all-or-nothing (``beam_jobs.outputs.publish``).

A run writes into a fresh version folder ``OUTPUT/date=D/v=<run id>/``; only
after the pipeline and every check succeeded does ``publish`` write its
``_SUCCESS`` and then ``OUTPUT/date=D/_LATEST``. A failed run deletes its
version folder and leaves the live one untouched; one that failed because too
many rows were rejected is moved to ``OUTPUT/_failed/date=D.<run id>`` for
inspection. Runs for different dates touch disjoint folders. A run killed
outright leaves its leased version folder behind: the next run of the same
date removes it once its lease has run out (``publish.remove_abandoned``).
"""
from __future__ import annotations

import os

from apache_beam.io.filesystems import FileSystems

from ctrflow.beam_jobs.outputs import publish as pub
from ctrflow.pipeline import artifacts as af


def partition_dir(output: str, date: str) -> str:
    return af.date_partition(output, date)


def staging_dir(output: str, date: str) -> str:
    """The run's version folder inside the date partition (not read until published)."""
    return pub.new_version_dir(partition_dir(output, date))


def publish(staging: str) -> dict:
    """Makes the run's version folder the live partition."""
    return pub.publish(staging)


def _output_of(staging: str) -> str:
    return os.path.dirname(os.path.dirname(staging.rstrip("/")))


def failed_dir(staging: str) -> str:
    """Where a failed run's folder is kept: ``OUTPUT/_failed/date=D.<run id>``."""
    partition, version = os.path.split(staging.rstrip("/"))
    run_id = version[len(af.VERSION_PREFIX):]
    return os.path.join(_output_of(staging), af.FAILED, f"{os.path.basename(partition)}.{run_id}")


def keep_failed(staging: str) -> str:
    """Moves a failed run's folder (rejected rows, manifest) aside for inspection."""
    pub.release(staging)  # its lease ends here, not in _failed/
    target = failed_dir(staging)
    files = [m.path for m in FileSystems.match([staging.rstrip("/") + "/**"])[0].metadata_list]
    if "://" not in target:  # object stores have no folders to create
        FileSystems.mkdirs(target)
    FileSystems.rename(files, [target + f[len(staging.rstrip("/")):] for f in files])
    discard(staging)
    return target


def discard(staging: str) -> None:
    """Deletes a failed run's version folder, and the partition folder if nothing else is in it."""
    pub.discard(staging)
    partition = os.path.dirname(staging.rstrip("/"))
    if "://" not in partition:
        try:
            os.rmdir(partition)  # only when empty: a first run that failed leaves no empty date=D/
        except OSError:
            pass
