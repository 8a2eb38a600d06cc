"""``ctrflow demo``: the whole product on the bundled census data, in a few minutes.

preprocess (adult.data = train, adult.test = eval) -> train -> export ->
score adult.test as a "daily table" -> print the eval AUC and where
everything went.
"""
from __future__ import annotations

import argparse
import dataclasses
import datetime
import json
import os
import time
from importlib import resources

from apache_beam.io.filesystems import FileSystems

from ctrflow.common.errors import OptionsError
from ctrflow.common.flags import FlagParser, build_parser, from_namespace, option, to_dict
from ctrflow.model.config import MODELS
from ctrflow.pipeline import artifacts as af


def bundled_census_dir() -> str:
    """The census files shipped as package data (``data/census`` in a checkout)."""
    return str(resources.files("ctrflow.data") / "census")


@dataclasses.dataclass(frozen=True, kw_only=True)
class DemoOptions:
    """``ctrflow demo``: where it writes, which model, and optionally other census files."""

    output: str = option("runs/demo", help="where the demo writes")
    model: str = option("deepfm", choices=MODELS, help="model family")
    epochs: int = option(30, help="maximum training epochs (early stopping on the validation holdout ends "
                                  "census's DeepFM after 7: BENCHMARKS.md, training: census)")
    data_dir: str | None = option(None, help="folder with adult.data and adult.test (default: the copy bundled "
                                             "with ctrflow)")
    schema: str | None = option(None, help="schema YAML (default: the bundled census.yaml)")

    def __post_init__(self) -> None:
        if self.epochs <= 0:
            raise OptionsError(f"--epochs must be > 0, got {self.epochs}")


def build_arg_parser() -> FlagParser:
    return build_parser(DemoOptions, "ctrflow demo", __doc__, formatter_class=argparse.RawDescriptionHelpFormatter)


def run(argv: list[str] | None = None) -> dict:
    """Parses the flags and runs the demo; returns its summary."""
    return run_demo(from_namespace(DemoOptions, build_arg_parser().parse_args(argv)))


def run_demo(opts: DemoOptions) -> dict:
    """preprocess -> train -> score on census; prints the AUCs and where everything went."""
    from ctrflow.beam_jobs.preprocess import job as preprocess
    from ctrflow.beam_jobs.scoring import job as score
    from ctrflow.model import train
    from ctrflow.model.metrics import roc_auc
    from ctrflow.schemas import bundled_schema_path

    data_dir = opts.data_dir or bundled_census_dir()
    schema = opts.schema or bundled_schema_path("census")
    out = opts.output if "://" in opts.output else os.path.abspath(opts.output)
    data, model_dir, scores = (os.path.join(out, d) for d in ("data", "model", "scores"))
    train_file, test_file = (os.path.join(data_dir, f) for f in ("adult.data", "adult.test"))
    date = datetime.date.today().isoformat()
    times = {}
    t = time.time()
    pre = preprocess.run(["--schema", schema, "--train", train_file, "--eval", test_file, "--output", data])
    times["preprocess"] = time.time() - t
    t = time.time()
    metrics = train.run(["--data", data, "--output", model_dir, "--model", opts.model, "--epochs", str(opts.epochs),
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
        "paths": {"preprocessed": data, "model": os.path.join(model_dir, af.EXPORT),
                  "metrics": os.path.join(model_dir, af.METRICS), "scores": manifest["output"],
                  "drift": os.path.join(manifest["output"], af.DRIFT)},
    }
    summary["options"] = to_dict(opts)
    with FileSystems.create(os.path.join(out, af.DEMO_SUMMARY)) as f:
        f.write(json.dumps(summary, indent=2).encode("utf-8"))
    print("\n==== ctrflow demo: census income, " + opts.model + " ====")
    print(f"eval AUC on adult.test : {metrics['auc']:.4f}  (log loss {metrics['logloss']:.4f}, "
          f"{metrics['eval_rows']} rows)")
    print(f"AUC of the scoring job : {scored_auc:.4f}  ({manifest['scored_rows']} scored, "
          f"{manifest['rejected_rows']} rejected)")
    print("stage seconds          : " + ", ".join(f"{k} {v:.1f}" for k, v in times.items()))
    for name, path in summary["paths"].items():
        print(f"{name:<23}: {path}")
    return summary
