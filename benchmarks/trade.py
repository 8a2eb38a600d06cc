"""The trade table: time-ordered eval AUC against scoring rows/s, per model family, width and ensemble size.

Why: the default model is paid for on every row scored, and a quality table
alone does not show what it costs (issue 32). For every grid point
{model} x {--embedding-dim} x {--ensemble} (default: deepfm, wide_deep,
dcnv2 x 8/16/32/64 x 1/3) this measures, in one run:

- **quality**: eval AUC (with its DeLong 95% interval) and validation AUC on
  a dataset's *time-ordered* split, the same preprocess output, validation
  rows (the last 10% of train) and cut as ``benchmarks/quality.py``'s first
  table (``quality.Dataset.ordered``);
- **scoring cost**: the same flags trained on ``--score-train-rows``
  generated Criteo-format rows (``benchmarks/criteo_gen.py``; one epoch: the
  graph scored, not its quality, is timed), then ``ctrflow score`` on
  ``--score-rows`` generated rows of the same generator, timed as
  ``benchmarks/score.py`` times it (wall seconds of the whole command,
  ``--repeats`` runs, median). Each point's seconds are also given against a
  single 16-wide DeepFM (``--ensemble 1 --embedding-dim 16``) timed in the
  same run, the reference issue 32 sets (defaults at most 2x its time).

The grid point equal to the default flags is marked; when no point is (the
defaults are not a plain width x ensemble x family), a "default flags" row is
added. Results per point are cached in ``benchmarks/_work/trade/`` (a rerun
skips finished points); the table goes to the ``trade`` section of
BENCHMARKS.md, after ``quality``.

    python benchmarks/trade.py --datasets movielens frappe            # the full grid (many hours)
    python benchmarks/trade.py --datasets movielens frappe --points deepfm:16:1 deepfm:64:3 \\
        --variant "--hidden-units 64 32"                               # a few rows, plus a variant
    python benchmarks/trade.py --datasets census --points deepfm:16:1 dcnv2:8:1 --max-rows 2000 \\
        --epochs 1 --score-train-rows 5000 --score-rows 20000 --no-write  # a smoke run
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import logging
import os
import shlex
import shutil
import sys
import zlib

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from benchmarks import criteo_gen, quality, score  # noqa: E402
from benchmarks.report import (  # noqa: E402
    ROOT,
    busy_cores,
    machine_line,
    machine_state,
    markdown_table,
    measure,
    median,
    section_head,
    update_section,
)

LOG = logging.getLogger("benchmarks.trade")
WORK = os.path.join(ROOT, "benchmarks", "_work", "trade")
SECTION = "trade"
MODELS = ("deepfm", "wide_deep", "dcnv2")
WIDTHS = (8, 16, 32, 64)
ENSEMBLES = (1, 3)
REFERENCE = ("deepfm", 16, 1)  # issue 32's yardstick: a single 16-wide DeepFM


@dataclasses.dataclass(frozen=True)
class Point:
    """One grid point; ``model is None`` is a row of the default flags plus ``extra`` (``--variant``), which
    alone is the "default flags" row."""

    model: str | None
    width: int | None
    ensemble: int | None
    extra: str = ""  # more flags (a --variant: a candidate default, a narrower MLP, ...)

    @property
    def name(self) -> str:
        base = "default_flags" if self.model is None else f"{self.model}_w{self.width}_e{self.ensemble}"
        slug = "".join(c if c.isalnum() else "_" for c in self.extra.replace("--", ""))
        return base + (f"__{slug}_{zlib.crc32(self.extra.encode()):08x}" if self.extra else "")

    @property
    def flags(self) -> list[str]:
        grid_flags = [] if self.model is None else [
            "--model", self.model, "--embedding-dim", str(self.width), "--ensemble", str(self.ensemble)]
        return grid_flags + shlex.split(self.extra)


def parse_point(text: str) -> Point:
    """``model:width:ensemble`` (``--points``), e.g. ``deepfm:16:1``."""
    try:
        model, width, ensemble = text.split(":")
        return Point(model, int(width), int(ensemble))
    except ValueError:
        raise argparse.ArgumentTypeError(f"a grid point is model:width:ensemble, e.g. deepfm:16:1; got {text!r}")


def default_point() -> Point:
    """The default flags' (model, width, ensemble), from the trainer's and model config's defaults."""
    from ctrflow.model.config import ModelConfig
    from ctrflow.model.options import TrainerOptions

    cfg, opts = ModelConfig.__dataclass_fields__, TrainerOptions.__dataclass_fields__
    return Point(cfg["model"].default, cfg["embedding_dim"].default, opts["ensemble"].default)


def grid(models, widths, ensembles) -> list[Point]:
    return [Point(m, w, e) for m in models for w in widths for e in ensembles]


# ------------------------------------------------------------------ one point


def quality_of(ds: quality.Dataset, data: str, point: Point, extra: list[str], work: str) -> dict:
    """Validation and time-ordered eval AUC of ``point`` on ``ds``'s time split (with the AUC's DeLong interval)."""
    from ctrflow.model.slices import delong_auc

    model_dir = os.path.join(work, "models", point.name)
    m = quality.train_ctrflow(data, model_dir, point.flags + extra)
    ci = delong_auc(*quality.eval_scores(data, model_dir))
    return {"valid_auc": m["valid"]["auc"], "eval_auc": m["auc"], "auc_ci": [ci["auc_ci_low"], ci["auc_ci_high"]],
            "logloss": m["logloss"], "selected_epoch": m.get("selected_epoch"), "train_seconds": m["seconds"]}


def criteo_data(train_rows: int) -> str:
    """A preprocess output of ``train_rows`` generated Criteo rows (the scoring models' data; cached)."""
    from ctrflow.pipeline.artifacts import LATEST

    data = os.path.join(WORK, f"criteo_data_{train_rows}")
    if not os.path.exists(os.path.join(data, LATEST)):
        train = criteo_gen.ensure(os.path.join(score.WORK, f"criteo_train_{train_rows}.txt"), train_rows, seed=1)
        _run([sys.executable, "-m", "ctrflow.cli", "preprocess", "--schema", score.SCHEMA, "--train", train,
              "--output", data, "--max-rejected-fraction", "0.01"])
    return data


def _run(cmd: list[str]):
    m = measure(cmd, env=score.ENV)
    if m.returncode:
        raise SystemExit(f"{shlex.join(cmd)} failed:\n{m.output[-3000:]}")
    return m


def scoring_of(point: Point, data: str, day: str, repeats: int, batch_rows: int, train_flags: list[str]) -> dict:
    """``ctrflow score`` wall seconds (median of ``repeats``) of ``point``'s flags trained on the Criteo data."""
    model_dir = os.path.join(WORK, "score_models", f"{os.path.basename(data)}_{point.name}")
    if not os.path.exists(os.path.join(model_dir, "export", "saved_model.pb")):
        _run([sys.executable, "-m", "ctrflow.cli", "train", "--data", data, "--output", model_dir, "--verbose", "0",
              *train_flags, *point.flags])
    runs = []
    for _ in range(repeats):
        out = os.path.join(WORK, "score_out")
        shutil.rmtree(out, ignore_errors=True)
        m, manifest = score.run_job(day, model_dir, out, batch_rows, [])
        shutil.rmtree(out, ignore_errors=True)
        runs.append((m.seconds, m.cpu_seconds, m.peak_rss_mb, manifest["scored_rows"] + manifest["rejected_rows"]))
    return {"seconds": median([r[0] for r in runs]), "cpu_seconds": median([r[1] for r in runs]),
            "peak_rss_mb": max(r[2] for r in runs), "rows": runs[0][3], "repeats": repeats}


# ------------------------------------------------------------------ table


def _label(p: Point, default: Point) -> str:
    is_default = p == default or (p.model is None and not p.extra)
    what = p.model or f"default flags ({default.model})"
    return ("**default** " if is_default else "") + what + (f" `{p.extra}`" if p.extra else "")


def render(results: dict[str, dict], datasets: list[str], default: Point, args) -> str:
    ref = results.get(Point(*REFERENCE).name, {}).get("scoring")
    header = ["model", "embedding dim", "ensemble"]
    for d in datasets:
        header += [f"{d} valid AUC", f"{d} eval AUC (time split)", f"{d} 95% CI (DeLong)"]
    header += [f"score s ({args.score_rows:,} rows)", "rows/s", "x single 16-wide DeepFM", "peak RSS MB"]
    rows = []
    for r in results.values():
        p, s = Point(*r["point"]), r["scoring"]
        row = [_label(p, default), p.width if p.width is not None else default.width,
               p.ensemble if p.ensemble is not None else default.ensemble]
        for d in datasets:
            q = r["quality"].get(d)
            row += ([f"{q['valid_auc']:.4f}", f"{q['eval_auc']:.4f}", f"[{q['auc_ci'][0]:.4f}, {q['auc_ci'][1]:.4f}]"]
                    if q else ["-", "-", "-"])
        row += [f"{s['seconds']:.1f}", f"{s['rows'] / s['seconds']:,.0f}",
                f"{s['seconds'] / ref['seconds']:.2f}x" if ref else "n/a", f"{s['peak_rss_mb']:,.0f}"]
        rows.append(row)
    orders = "; ".join(f"{d}: {quality.DATASETS[d].order}" for d in datasets)
    return "\n\n".join([
        section_head("Quality against scoring cost (`benchmarks/trade.py`)",
                     f"time-ordered eval AUC ({', '.join(datasets)}) against `ctrflow score` rows/s on generated "
                     "Criteo-format rows, per model family, embedding width and ensemble size; the default marked.",
                     f"{machine_line()}. {machine_state(args.busy)}."),
        "AUC: `ctrflow train` with the row's flags (`--model M --embedding-dim W --ensemble E`, default flags "
        f"otherwise{', plus `' + args.ctrflow_flags + '`' if args.ctrflow_flags else ''}) on the time-ordered "
        f"splits of `benchmarks/quality.py` ({orders}; validation = the last 10% of train: choose on it, eval "
        "only reports). Scoring: the same flags trained for one epoch on "
        f"{args.score_train_rows:,} generated Criteo rows, then `ctrflow score` on {args.score_rows:,} generated "
        f"rows of the same generator, wall seconds of the whole command, median of {args.repeats}. "
        "\"x single 16-wide DeepFM\" = the row's scoring seconds / those of `--model deepfm --embedding-dim 16 "
        "--ensemble 1` in the same run (issue 32: the default at most 2x).",
        markdown_table(header, rows),
    ])


# ------------------------------------------------------------------ driver


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--datasets", nargs="*", choices=list(quality.DATASETS), default=["movielens", "frappe"],
                   help="the datasets whose time-ordered splits give the AUC (default movielens frappe)")
    p.add_argument("--models", nargs="*", choices=MODELS, default=list(MODELS))
    p.add_argument("--widths", nargs="*", type=int, default=list(WIDTHS))
    p.add_argument("--ensembles", nargs="*", type=int, default=list(ENSEMBLES))
    p.add_argument("--points", nargs="*", type=parse_point, metavar="MODEL:WIDTH:ENSEMBLE",
                   help="only these grid points instead of models x widths x ensembles (smoke runs)")
    p.add_argument("--variant", action="append", default=[], metavar="FLAGS",
                   help="a row of the default flags plus FLAGS, e.g. '--hidden-units 64 32' (repeatable): "
                        "what a part of the default buys, or a candidate default")
    p.add_argument("--score-rows", type=int, default=1_000_000, help="generated rows scored per point")
    p.add_argument("--score-train-rows", type=int, default=200_000,
                   help="generated Criteo rows the scoring models train on")
    p.add_argument("--repeats", type=int, default=1, help="scoring runs per point (median)")
    p.add_argument("--batch-rows", type=int, default=65536, help="ctrflow score --batch-rows")
    p.add_argument("--max-rows", type=int, help="smoke runs: the datasets' files keep their first N rows")
    p.add_argument("--epochs", type=int, help="smoke runs: --epochs of the quality training")
    p.add_argument("--ctrflow-flags", default="", help="flags added to every quality training")
    p.add_argument("--no-write", action="store_true", help="print, do not write BENCHMARKS.md")
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.WARNING)
    if args.epochs:
        args.ctrflow_flags = f"{args.ctrflow_flags} --epochs {args.epochs}".strip()
    quality.MAX_ROWS = args.max_rows
    datasets = [d for d in args.datasets if quality.present_dataset(d) is not None]
    if not datasets:
        raise SystemExit("none of --datasets is present")
    default = default_point()
    points = args.points or grid(args.models, args.widths, args.ensembles)
    reference = Point(*REFERENCE)
    if reference not in points:  # every row's cost is given against it
        points = [reference, *points]
    if default not in points:
        points.append(Point(None, None, None))
    points += [Point(None, None, None, extra) for extra in args.variant]
    data = {d: quality.preprocess(quality.DATASETS[d], quality.work_dir(d, "time"), quality.DATASETS[d].ordered)
            for d in datasets}
    criteo = criteo_data(args.score_train_rows)
    day = score.write_day(os.path.join(score.WORK, "inputs", f"criteo_day_{args.score_rows}.txt"), args.score_rows)
    args.busy = busy_cores()
    extra = shlex.split(args.ctrflow_flags)
    tag = f"max{args.max_rows}" if args.max_rows else "full"
    results: dict[str, dict] = {}
    for point in points:
        path = os.path.join(WORK, tag, f"{point.name}.json")
        key = {"point": list(dataclasses.astuple(point)), "ctrflow_flags": args.ctrflow_flags,
               "score_rows": args.score_rows, "score_train_rows": args.score_train_rows, "repeats": args.repeats}
        cached: dict = {}
        if os.path.exists(path):
            with open(path) as f:
                cached = json.load(f)
            if any(cached.get(k) != v for k, v in key.items()):
                cached = {}
        result = {**key, "quality": cached.get("quality", {}), "scoring": cached.get("scoring")}
        for d in datasets:  # a rerun adds the datasets and parts not measured yet
            if d not in result["quality"]:
                result["quality"][d] = quality_of(quality.DATASETS[d], data[d], point, extra,
                                                  os.path.join(WORK, tag, d))
                LOG.warning("%s on %s: valid AUC %.4f, eval AUC %.4f", point.name, d,
                            result["quality"][d]["valid_auc"], result["quality"][d]["eval_auc"])
        if result["scoring"] is None:
            result["scoring"] = scoring_of(point, criteo, day, args.repeats, args.batch_rows, ["--epochs", "1"])
            s = result["scoring"]
            LOG.warning("%s: scoring %.1f s (%.0f rows/s)", point.name, s["seconds"], s["rows"] / s["seconds"])
        results[point.name] = result
        os.makedirs(os.path.dirname(path), exist_ok=True)
        with open(path, "w") as f:
            json.dump(result, f, indent=2)
    body = render(results, datasets, default, args)
    print(body)
    if not args.no_write and not (args.max_rows or args.epochs):
        update_section(SECTION, body, after="quality")
    elif not args.no_write:
        print("not written to BENCHMARKS.md: --max-rows / --epochs make a smoke run, not the benchmark")


if __name__ == "__main__":
    main()
