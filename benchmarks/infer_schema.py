"""Inferred vs hand-written schemas: does `ctrflow schema infer` with only `--label` give as good a model?

For each dataset of ``benchmarks/quality.py`` (same files, same train / eval
split), infers a schema from the train and eval files with only ``--label``
(headerless files keep their ``col<N>`` names; nothing is edited), runs
preprocess + train (default flags, as the quality benchmark) + eval on it,
and compares the eval AUC with the hand-written ``schemas/<name>.yaml`` run
on the same files (preprocessed afresh). Writes
the "infer_schema" section of BENCHMARKS.md, and the inferred schemas under
``benchmarks/_work/infer_schema/<name>/``.

    python benchmarks/infer_schema.py [--only census ...] [--flags "--ensemble 1"] [--no-write]
"""
from __future__ import annotations

import argparse
import json
import logging
import os
import shlex
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from benchmarks import quality  # noqa: E402
from benchmarks.report import machine_line, markdown_table, section_head, update_section  # noqa: E402

WORK = os.path.join(ROOT, "benchmarks", "_work", "infer_schema")
LABELS = {"census": "col14", "criteo": "col0", "avazu": "col1", "movielens": "rating", "frappe": "col0"}
TOLERANCE = 0.005  # the bar: inferred within this much eval AUC of the hand-written schema


def infer_for(name: str, train: list[str], evals: list[str], work: str) -> tuple[str, dict[str, int]]:
    """(schema path, role counts) of the schema inferred from the train and eval files with only --label."""
    from ctrflow.cli import schema_infer

    path = os.path.join(work, f"{name}_inferred.yaml")
    argv = ["infer", "--label", LABELS[name], "--output", path]
    for f in train + evals:
        argv += ["--input", f]
    result = schema_infer.run(argv)
    roles: dict[str, int] = {}
    for d in result.decisions:
        roles[d.role] = roles.get(d.role, 0) + 1
    return path, roles


def run_dataset(name: str, flags: list[str]) -> dict:
    from ctrflow.beam_jobs.preprocess import job
    from ctrflow.pipeline.artifacts import LATEST, live_dir

    ds = quality.DATASETS[name]
    work = os.path.join(WORK, name)
    os.makedirs(work, exist_ok=True)
    train, evals = ds.prepare(work)
    t = time.time()
    schema, roles = infer_for(name, train, evals, work)
    infer_seconds = round(time.time() - t, 1)
    data = os.path.join(work, "data")
    if not os.path.exists(os.path.join(data, LATEST)):
        args = ["--schema", schema, "--output", data]
        for f in train:
            args += ["--train", f]
        for f in evals:
            args += ["--eval", f]
        job.run(args)
    inferred = quality.train_ctrflow(live_dir(data), os.path.join(work, "model"), flags)
    hand_data = quality.preprocess(ds, work=os.path.join(work, "hand"))  # fresh: the schema file as it is now
    hand = quality.train_ctrflow(hand_data, os.path.join(work, "hand_model"), flags)
    return {"inferred": {k: inferred[k] for k in ("auc", "logloss")}, "hand": {k: hand[k] for k in ("auc", "logloss")},
            "roles": roles, "infer_seconds": infer_seconds, "rows": quality.split_rows(live_dir(data)),
            "split": ds.split, "flags": " ".join(flags) or "default"}


def render(results: dict[str, dict]) -> str:
    header = ["dataset", "rows train / eval", "hand-written AUC", "inferred AUC", "inferred - hand",
              f"within {TOLERANCE}", "inferred roles", "infer s"]
    rows = []
    for name, r in results.items():
        diff = r["inferred"]["auc"] - r["hand"]["auc"]
        roles = ", ".join(f"{v} {k}" for k, v in sorted(r["roles"].items()))
        rows.append([name, f"{r['rows'].get('train')} / {r['rows'].get('eval')}", f"{r['hand']['auc']:.4f}",
                     f"{r['inferred']['auc']:.4f}", f"{diff:+.4f}", "yes" if diff >= -TOLERANCE else "no", roles,
                     f"{r['infer_seconds']}"])
    flags = {r["flags"] for r in results.values()}
    return "\n\n".join([
        section_head("Inferred vs hand-written schemas (`benchmarks/infer_schema.py`)",
                     "eval AUC of preprocess + train on the schema `ctrflow schema infer` writes from the train and "
                     "eval files with only `--label`, against the hand-written `schemas/<name>.yaml` on the same "
                     "files and flags", machine_line()),
        "Splits as in the quality section: " + "; ".join(f"{n}: {r['split']}" for n, r in results.items())
        + f". Trainer flags: {', '.join(sorted(flags))} (plus `--cache --verbose 0`).",
        markdown_table(header, rows),
    ])


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--only", nargs="*", choices=list(quality.DATASETS), default=list(quality.DATASETS))
    p.add_argument("--flags", default="", help="extra trainer flags for both models, e.g. '--ensemble 1'")
    p.add_argument("--no-write", action="store_true", help="print, do not write BENCHMARKS.md")
    args = p.parse_args()
    logging.basicConfig(level=logging.WARNING)
    results = {}
    for name in args.only:
        if quality.present_dataset(name) is None:
            continue
        results[name] = run_dataset(name, shlex.split(args.flags))
        with open(os.path.join(WORK, f"{name}.json"), "w") as f:
            json.dump(results[name], f, indent=2)
        print(f"{name}: hand-written {results[name]['hand']['auc']:.4f}, inferred {results[name]['inferred']['auc']:.4f}",
              flush=True)
    body = render(results)
    print(body)
    if not args.no_write and results:
        update_section("infer_schema", body, after="quality")


if __name__ == "__main__":
    main()
