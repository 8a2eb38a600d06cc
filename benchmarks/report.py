"""Measuring commands and writing BENCHMARKS.md, shared by every benchmark script.

``measure(cmd)`` runs a command in its own process and samples the resident
memory of its whole process tree (Beam's multi-processing workers included)
from /proc, so "peak RSS" is the peak of the tree's sum. ``update_section``
rewrites only one script's section of BENCHMARKS.md, so scripts can run
independently and in any order. Every section opens with ``section_head``:
what it measures, the command that wrote it, date and machine. A section holds
the latest run only; earlier runs are in git (``git log -p BENCHMARKS.md``).
"""
from __future__ import annotations

import dataclasses
import datetime
import os
import platform
import re
import resource
import shlex
import subprocess
import sys
import threading
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BENCHMARKS_MD = os.path.join(ROOT, "BENCHMARKS.md")
_PAGE = os.sysconf("SC_PAGE_SIZE")


@dataclasses.dataclass
class Measurement:
    seconds: float
    peak_rss_mb: float
    returncode: int
    output: str
    cpu_seconds: float = 0.0  # user + system of the command's processes (less sensitive to a shared machine)


def _tree(pid: int) -> list[int]:
    pids, todo = [], [pid]
    while todo:
        p = todo.pop()
        pids.append(p)
        try:
            for task in os.listdir(f"/proc/{p}/task"):
                with open(f"/proc/{p}/task/{task}/children") as f:
                    todo += [int(c) for c in f.read().split()]
        except OSError:
            pass
    return pids


def _rss_bytes(pids: list[int]) -> int:
    total = 0
    for p in pids:
        try:
            with open(f"/proc/{p}/statm") as f:
                total += int(f.read().split()[1]) * _PAGE
        except OSError:
            pass
    return total


def measure(cmd: list[str], env: dict | None = None, interval: float = 0.1, cwd: str | None = None) -> Measurement:
    """Runs ``cmd``; wall seconds and peak RSS (MB) of its process tree."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.perf_counter()
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            env={**os.environ, **(env or {})}, cwd=cwd or ROOT)
    peak = 0
    stop = threading.Event()

    def sample():
        nonlocal peak
        while not stop.is_set():
            peak = max(peak, _rss_bytes(_tree(proc.pid)))
            stop.wait(interval)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    output, _ = proc.communicate()
    seconds = time.perf_counter() - start
    stop.set()
    sampler.join()
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return Measurement(seconds, peak / 2**20, proc.returncode, output, cpu)


def median(values: list[float]) -> float:
    ordered = sorted(values)
    mid = len(ordered) // 2
    return ordered[mid] if len(ordered) % 2 else (ordered[mid - 1] + ordered[mid]) / 2


def machine_line() -> str:
    return (f"{datetime.date.today().isoformat()}, {os.cpu_count()} cores, "
            f"{os.sysconf('SC_PHYS_PAGES') * _PAGE / 2**30:.0f} GiB RAM, Python {platform.python_version()}")


def command_line(argv: list[str] | None = None) -> str:
    """The command that is running (``sys.argv``), as typed from the repository root."""
    argv = sys.argv if argv is None else argv
    return "python " + shlex.join([os.path.relpath(os.path.abspath(argv[0]), ROOT), *argv[1:]])


def section_head(title: str, measures: str, run: str, command: str | None = None) -> str:
    """The opening of every section: its title, what it measures, the command that wrote it, date and machine.

    ``run`` says when and where (``machine_line()``, plus how busy the machine was).
    """
    return (f"## {title}\n\n**Measures**: {measures}\n\n**Command**: `{command or command_line()}`\n\n"
            f"**Run**: {run}")


def busy_cores(seconds: float = 3.0) -> float:
    """Cores in use right now, by every process (from /proc/stat over ``seconds``; the caller sleeps meanwhile).

    Why not the load average: it decays over a minute, so a benchmark started
    just after another job ended was reported as running on a shared machine.
    """
    def snapshot() -> tuple[int, int]:
        with open("/proc/stat") as f:
            values = [int(v) for v in f.readline().split()[1:]]
        return sum(values), values[3] + values[4]  # total, idle + iowait

    try:
        total0, idle0 = snapshot()
        time.sleep(seconds)
        total1, idle1 = snapshot()
    except OSError:
        return float("nan")
    share = 1 - (idle1 - idle0) / max(total1 - total0, 1)
    return share * (os.cpu_count() or 1)


def machine_state(busy: float) -> str:
    """How busy the machine was when a benchmark started (``busy_cores()``), in words."""
    cores = os.cpu_count() or 1
    if busy < 0.25 * cores:
        return (f"Quiet machine: nothing else ran ({busy:.2f} of {cores} cores busy in the seconds before the "
                "start)")
    return (f"**Shared machine**: other jobs ran at the same time ({busy:.2f} of {cores} cores busy at the "
            "start), so absolute seconds are inflated and noisy; ratios come from this one invocation")


def machine_label(busy: float) -> str:
    """The short form of ``machine_state`` for a table cell ("Quiet machine" / "**Shared machine**")."""
    return machine_state(busy).split(":")[0]


def markdown_table(header: list[str], rows: list[list]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    lines += ["| " + " | ".join(str(c) for c in row) + " |" for row in rows]
    return "\n".join(lines)


INTRO = ("One section per benchmark, each written by its script in `benchmarks/` (between its `BEGIN`/`END` "
         "markers, which the script rewrites and nothing else): what it measures, the command, the latest run's "
         "tables, date and machine. Ratios compare runs made in the same invocation on the same machine. Earlier "
         "runs are in git: `git log -p BENCHMARKS.md`.")


def update_section(name: str, body: str, path: str = BENCHMARKS_MD, after: str | None = None) -> None:
    """Replaces the ``name`` section of BENCHMARKS.md (creating the file or section).

    A new section goes right after the ``after`` section when that exists, else at the end.
    """
    begin, end = f"<!-- BEGIN {name} -->", f"<!-- END {name} -->"
    text = open(path).read() if os.path.exists(path) else (
        "# ctrflow benchmarks\n\n" + INTRO + "\n")
    block = f"{begin}\n{body.strip()}\n{end}"
    pattern = re.compile(re.escape(begin) + ".*?" + re.escape(end), re.S)
    anchor = f"<!-- END {after} -->" if after else None
    if pattern.search(text):
        text = pattern.sub(lambda _: block, text)
    elif anchor and anchor in text:
        text = text.replace(anchor, anchor + "\n\n" + block, 1)
    else:
        text = text.rstrip() + "\n\n" + block + "\n"
    with open(path, "w") as f:
        f.write(text)
