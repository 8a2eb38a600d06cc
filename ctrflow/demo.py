"""``ctrflow demo``: the whole product on the bundled census data, in a few minutes.

preprocess (adult.data = train, adult.test = eval) -> train -> export ->
score adult.test as a "daily table" -> print the eval AUC and where
everything went.
"""
from __future__ import annotations

import argparse
import datetime
import json
import os
import time
from importlib import resources


def bundled_census_dir() -> str:
    """The census files shipped as package data (``data/census`` in a checkout)."""
    return str(resources.files("ctrflow.data") / "census")


def build_arg_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="ctrflow demo", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--output", default="runs/demo", help="where the demo writes (default: %(default)s)")
    p.add_argument("--model", default="deepfm", choices=("deepfm", "wide_deep", "lr"))
    p.add_argument("--epochs", type=int, default=10)
    p.add_argument("--data-dir", default=None,
                   help="folder with adult.data and adult.test (default: the copy bundled with ctrflow)")
    p.add_argument("--schema", default=None, help="schema YAML (default: the bundled census.yaml)")
    return p


def run(argv: list[str] | None = None) -> dict:
    args = build_arg_parser().parse_args(argv)
    from ctrflow.schemas import bundled_schema_path

    args.data_dir = args.data_dir or bundled_census_dir()
    args.schema = args.schema or bundled_schema_path("census")
    from ctrflow.beam_jobs import preprocess, score
    from ctrflow.model import train
    from ctrflow.model.metrics import roc_auc

    out = os.path.abspath(args.output)
    data, model_dir, scores = (os.path.join(out, d) for d in ("data", "model", "scores"))
    train_file, test_file = (os.path.join(args.data_dir, f) for f in ("adult.data", "adult.test"))
    date = datetime.date.today().isoformat()
    times = {}
    t = time.time()
    pre = preprocess.run(["--schema", args.schema, "--train", train_file, "--eval", test_file, "--output", data])
    times["preprocess"] = time.time() - t
    t = time.time()
    metrics = train.run(["--data", data, "--output", model_dir, "--model", args.model, "--epochs", str(args.epochs),
                         "--cache", "--verbose", "2"])
    times["train"] = time.time() - t
    t = time.time()
    [manifest] = score.run(["--model", model_dir, "--input", test_file, "--date", date, "--output", scores,
                            "--passthrough", "income_bracket"])
    times["score"] = time.time() - t

    import pyarrow.dataset as ds

    table = ds.dataset(manifest["output"], format="parquet", exclude_invalid_files=True).to_table()
    labels = [v.rstrip(".") == ">50K" for v in table.column("income_bracket").to_pylist()]
    scored_auc = roc_auc(labels, table.column("score").to_numpy())
    summary = {
        "eval_auc": metrics["auc"], "eval_logloss": metrics["logloss"], "scored_auc": scored_auc,
        "rows": {s: v["output_rows"] for s, v in pre["splits"].items()},
        "scored_rows": manifest["scored_rows"], "rejected_rows": manifest["rejected_rows"],
        "seconds": {k: round(v, 1) for k, v in times.items()},
        "paths": {"preprocessed": data, "model": os.path.join(model_dir, "export"),
                  "metrics": os.path.join(model_dir, "metrics.json"), "scores": manifest["output"],
                  "drift": os.path.join(manifest["output"], "drift.json")},
    }
    with open(os.path.join(out, "demo_summary.json"), "w") as f:
        json.dump(summary, f, indent=2)
    print("\n==== ctrflow demo: census income, " + args.model + " ====")
    print(f"eval AUC on adult.test : {metrics['auc']:.4f}  (log loss {metrics['logloss']:.4f}, "
          f"{metrics['eval_rows']} rows)")
    print(f"AUC of the scoring job : {scored_auc:.4f}  ({manifest['scored_rows']} scored, "
          f"{manifest['rejected_rows']} rejected)")
    print("stage seconds          : " + ", ".join(f"{k} {v:.1f}" for k, v in times.items()))
    for name, path in summary["paths"].items():
        print(f"{name:<23}: {path}")
    return summary
