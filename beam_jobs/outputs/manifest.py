"""Run manifests: what a job read, wrote and rejected, and with which versions.

The counts are data the pipeline wrote (``beam_jobs.outputs.row_counts``), not Beam
metrics, which depend on the runner; ``check_counts`` refuses a run in which
input != output + rejected. Metrics only time the run's parts, where the runner has them.
"""
from __future__ import annotations

import json
import os
import platform
import time
from importlib import metadata
from typing import Any, Sequence

from apache_beam.io.filesystems import FileSystems
from apache_beam.metrics.metric import MetricsFilter

from ctrflow.beam_jobs.input.transforms import COUNTER_NAMESPACE, TASK_END_MS, TASK_START_MS
from ctrflow.common.errors import ExitCode, UserError

_PACKAGES = ("ctrflow", "apache-beam", "tensorflow", "tensorflow-transform", "tfx-bsl", "keras", "pyarrow",
             "numpy", "pandas")


class RejectedFractionError(UserError, RuntimeError):
    """More rows were rejected than the job allows (--max-rejected-fraction)."""

    exit_code = ExitCode.TOO_MANY_REJECTED


def library_versions() -> dict[str, str]:
    out = {"python": platform.python_version()}
    for name in _PACKAGES:
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            pass
    return out


def runner_metrics(result) -> dict | None:
    """The ctrflow metrics of a finished pipeline; None when its runner has none (the DaskRunner)."""
    try:
        return result.metrics().query(MetricsFilter().with_namespace(COUNTER_NAMESPACE))
    except NotImplementedError:
        return None


def task_window(result, splits: str | Sequence[str]) -> tuple[float, float] | None:
    """(first read task start, last read task end) over the splits, epoch seconds; None without file tasks."""
    wanted = {splits} if isinstance(splits, str) else set(splits)
    ends = {}
    query = runner_metrics(result) or {"distributions": []}
    for d in query["distributions"]:
        split, _, what = d.key.metric.name.rpartition("/")
        value = d.committed if d.committed is not None else d.attempted
        if split not in wanted or value is None or not value.count:
            continue
        if what == TASK_START_MS:
            ends["start"] = min(ends.get("start", value.min), value.min)
        elif what == TASK_END_MS:
            ends["end"] = max(ends.get("end", value.max), value.max)
    return (ends["start"] / 1000, ends["end"] / 1000) if len(ends) == 2 else None


def pipeline_parts(result, splits: str | Sequence[str], began: float, ended: float) -> dict[str, float | str]:
    """A pipeline's wall time as start-up / reading (and scoring) / finalize, from its read tasks' times.

    start: building the pipeline (TFT traces the preprocessing_fn here) and the runner's start, until the
    first read task; read: first task start to last task end; finalize: the rest (combines, file renames).
    """
    if runner_metrics(result) is None:
        return {"unavailable": f"{type(result).__name__} reports no metrics"}
    window = task_window(result, splits)
    if window is None:
        return {}
    first, last = window
    return {"start": round(first - began, 3), "read": round(last - first, 3), "finalize": round(ended - last, 3)}


def process_seconds() -> float | None:
    """Seconds since this process started (interpreter start-up and imports included); Linux only."""
    try:
        with open("/proc/self/stat") as f:
            start_ticks = int(f.read().rsplit(")", 1)[1].split()[19])
        with open("/proc/uptime") as f:
            uptime = float(f.read().split()[0])
    except (OSError, ValueError, IndexError):
        return None
    return round(uptime - start_ticks / os.sysconf("SC_CLK_TCK"), 3)


def split_counts(found: dict[str, int], split: str, output_key: str) -> dict[str, int]:
    """A split's own counts; rows a hash split moved to another split are not its input."""
    return {
        "input_rows": found.get(f"{split}/input_rows", 0) - found.get(f"{split}/split_out_rows", 0),
        output_key: found.get(f"{split}/output_rows", 0),
        "rejected_rows": found.get(f"{split}/rejected_rows", 0),
    }


def check_counts(counts: dict[str, int], split: str, output_key: str, max_rejected_fraction: float,
                 rejected_path: str) -> None:
    """Fails when rows went missing, or when too many were rejected."""
    n_in, n_out, n_bad = counts["input_rows"], counts[output_key], counts["rejected_rows"]
    if n_in != n_out + n_bad:
        raise RuntimeError(f"[{split}] {n_in} rows read but {n_out} written + {n_bad} rejected: rows were lost")
    if n_in and n_bad / n_in > max_rejected_fraction:
        raise RejectedFractionError(
            f"[{split}] {n_bad} of {n_in} rows ({n_bad / n_in:.2%}) were rejected, above "
            f"--max-rejected-fraction {max_rejected_fraction:g}; see {rejected_path}")


def write_json(path: str, doc: Any) -> None:
    with FileSystems.create(path) as f:
        f.write(json.dumps(doc, indent=2, sort_keys=True, default=str).encode("utf-8"))


def read_json(path: str) -> Any:
    with FileSystems.open(path) as f:
        return json.loads(f.read().decode("utf-8"))


class Stopwatch:
    """Named stage durations for the manifest."""

    def __init__(self):
        self.started = time.time()
        self.process_start = process_seconds()  # interpreter start-up and imports before this watch started
        self.stages: dict[str, float] = {}
        self._t = self.started

    def lap(self, stage: str) -> float:
        now = time.time()
        self.stages[stage] = round(now - self._t, 3)
        self._t = now
        return self.stages[stage]

    def total(self) -> float:
        return round(time.time() - self.started, 3)
