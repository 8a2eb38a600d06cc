"""The "floors" section of BENCHMARKS.md: every job against its floor and its baseline, in one table.

Why a file and not a hand-written table: issue 12 asks for one table that the
scripts reproduce from a fresh clone. ``benchmarks/score.py``,
``benchmarks/preprocess.py`` and ``benchmarks/train.py`` each measure their job,
its floor and its baseline in one invocation; each calls ``record()`` with its
row, which is kept in ``benchmarks/floors.json`` (tracked) and the section is
re-rendered from every row recorded so far. So each row's ratios come from one
run, and rerunning one script replaces only its rows.

    python benchmarks/floors_summary.py     # re-render the section from floors.json
"""
from __future__ import annotations

import datetime
import json
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from benchmarks.report import ROOT, markdown_table, section_head, update_section  # noqa: E402

FLOORS_JSON = os.path.join(ROOT, "benchmarks", "floors.json")
ORDER = ("scoring", "preprocessing", "training")


def record(key: str, row: dict, path: str = FLOORS_JSON) -> None:
    """Stores one job's row under ``key`` (e.g. ``scoring 1,000,000``) and re-renders the section."""
    rows = load(path)
    rows[key] = {"date": datetime.date.today().isoformat(), **row}
    with open(path, "w") as f:
        json.dump(rows, f, indent=2, sort_keys=True)
        f.write("\n")
    update_section("floors", render(rows))


def load(path: str = FLOORS_JSON) -> dict[str, dict]:
    if not os.path.exists(path):
        return {}
    with open(path) as f:
        return json.load(f)


def _sort_key(item: tuple[str, dict]) -> tuple[int, float]:
    row = item[1]
    job = row["job"].split(" (")[0]  # "scoring (against the typed loop)" sorts with "scoring"
    return ORDER.index(job) if job in ORDER else len(ORDER), row.get("rows", 0), row["job"]


def _ratio_text(ratio: float | None, target: float) -> str:
    """Bold ratio; three decimals when two would round a miss up to the target (1.996 -> "1.996x")."""
    if not ratio:
        return "-"
    return f"**{ratio:.3f}x**" if ratio < target and round(ratio, 2) >= target else f"**{ratio:.2f}x**"


def render(rows: dict[str, dict]) -> str:
    header = ["job", "rows", "floor (what it is)", "floor s", "job s", "job / floor", "baseline (same run)",
              "baseline s", "job vs baseline", "target", "met", "measured"]
    table = []
    for _, r in sorted(rows.items(), key=_sort_key):
        ratio = r["baseline_s"] / r["job_s"] if r.get("baseline_s") and r.get("job_s") else None
        table.append([
            r["job"], f"{r['rows']:,}", r["floor_what"] if r.get("floor_s") else "not measured at this size",
            f"{r['floor_s']:.1f}" if r.get("floor_s") else "-", f"{r['job_s']:.1f}",
            f"{r['job_s'] / r['floor_s']:.2f}x" if r.get("floor_s") else "-", r["baseline"], f"{r['baseline_s']:.1f}" if r.get("baseline_s") else "-",
            _ratio_text(ratio, r["target"]), f"{r['target']:g}x",
            ("yes" if ratio >= r["target"] else "no") if ratio else "-",
            ", ".join(x for x in (r.get("date"), r["measured"]) if x)])
    return "\n".join([
        section_head("Floors: each job against the hardware and its baseline (`benchmarks/floors_summary.py`)",
                     "each job's time against its floor (the least the hardware needs for the same output) and "
                     "against its baseline, in one table.",
                     "per row, in its last column (date and machine state); the machine is the one named in the "
                     "row's section above.", command="python benchmarks/floors_summary.py"),
        "",
        "Rendered from `benchmarks/floors.json`, which `benchmarks/score.py`, "
        "`benchmarks/preprocess.py` and `benchmarks/train.py --only criteo` update: each row's job, floor and "
        "baseline come from one invocation of its script (the sections above give the details, medians and "
        "breakdowns). Floors: scoring = Arrow's multithreaded CSV parse + the model's `score_and_ids` on ready "
        "tensors; preprocessing = one Arrow/numpy process computing the same boundaries, vocabularies and "
        "TFRecords; training = the compiled train step on in-memory tensors for as many epochs as the fit ran "
        "(job and baseline: the fit's wall time, tf.data input included for ctrflow, numpy arrays for DeepCTR).",
        "",
        markdown_table(header, table),
    ])


if __name__ == "__main__":
    update_section("floors", render(load()))
    print(render(load()))
