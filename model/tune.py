"""``ctrflow tune``: a small budgeted search of the model's main knobs on the validation holdout.

Trial 1 is the given flags (the defaults unless overridden); the others draw
learning rate, embedding size, row weight decay and dropout from a small grid
(seeded, without repeats). Each trial is a full ``ctrflow train`` run under
``OUTPUT/trials/N`` with early stopping on the ``--valid-fraction`` holdout;
trials are ranked by that validation AUC only, never by eval (eval AUC is in
the table for reading, not for choosing). Outputs::

    trials.csv / trials.json   one row per trial: its flags, validation and eval AUC / log loss, epochs
    best.json                  the best trial's flags and metrics, and its model directory
"""
from __future__ import annotations

import csv
import dataclasses
import json
import logging
import os
import random

from ctrflow.common.errors import OptionsError
from ctrflow.common.flags import FlagParser, add_flags, from_namespace, option
from ctrflow.common.logs import setup_logging
from ctrflow.model.config import ModelConfig
from ctrflow.model.options import TrainerOptions
from ctrflow.pipeline import artifacts as af

GRID: dict[str, tuple] = {
    "learning_rate": (3e-3, 1e-2, 3e-2),
    "embedding_dim": (16, 32, 64),
    "row_weight_decay": (0.0, 0.5, 2.0),
    "dropout": (0.0, 0.1, 0.3),
}


@dataclasses.dataclass(frozen=True, kw_only=True)
class TuneOptions:
    """How many trials and which draw."""

    trials: int = option(8, help="trials, the first with the given flags (each is one full training run)")
    tune_seed: int = option(0, help="seed of the draw of the trials' settings")

    def __post_init__(self) -> None:
        if self.trials <= 0:
            raise OptionsError(f"--trials must be > 0, got {self.trials}")


def draw_settings(base: ModelConfig, trials: int, seed: int) -> list[dict]:
    """``trials`` distinct settings of the GRID keys; the first is ``base``'s own values."""
    first = {k: getattr(base, k) for k in GRID}
    settings, seen = [first], {tuple(first.values())}
    rng = random.Random(seed)
    space = 1
    for values in GRID.values():
        space *= len(values)
    while len(settings) < min(trials, space + 1):
        s = {k: rng.choice(v) for k, v in GRID.items()}
        if tuple(s.values()) not in seen:
            seen.add(tuple(s.values()))
            settings.append(s)
    return settings


def flags_of(setting: dict) -> str:
    return " ".join(f"--{k.replace('_', '-')} {v}" for k, v in setting.items())


def build_arg_parser() -> FlagParser:
    from ctrflow.model.train import build_arg_parser as train_parser

    p = train_parser()
    p.prog, p.description = "ctrflow tune", ("Train a few settings of learning rate, embedding size, row weight "
                                            "decay and dropout; rank them on the validation holdout.")
    add_flags(p.add_argument_group("tune"), TuneOptions)
    return p


def run(argv: list[str] | None = None) -> list[dict]:
    """Runs the trials; returns the table (also in OUTPUT/trials.csv and trials.json)."""
    from ctrflow.model.train import run_job

    ns = build_arg_parser().parse_args(argv)
    setup_logging()
    tune = from_namespace(TuneOptions, ns)
    opts = from_namespace(TrainerOptions, ns)
    if opts.valid_fraction <= 0:
        raise OptionsError("ctrflow tune ranks trials on the validation holdout: --valid-fraction must be > 0")
    base = ModelConfig.from_args(ns, base=ModelConfig.from_yaml(opts.config) if opts.config else None)
    out = opts.output.rstrip("/")
    rows = []
    for i, setting in enumerate(draw_settings(base, tune.trials, tune.tune_seed), start=1):
        trial_dir = os.path.join(out, af.TRIALS, str(i))
        logging.info("trial %d/%d: %s", i, tune.trials, flags_of(setting))
        _clear_keras()
        m = run_job(dataclasses.replace(opts, output=trial_dir), dataclasses.replace(base, **setting))
        rows.append({"trial": i, **setting, "flags": flags_of(setting), "valid_auc": m["valid"]["auc"],
                     "valid_logloss": m["valid"]["logloss"], "eval_auc": m["auc"], "eval_logloss": m["logloss"],
                     "epochs_run": m["epochs_run"], "model_dir": trial_dir})
    _write(out, rows)
    best = max(rows, key=lambda r: r["valid_auc"])
    logging.info("best trial %d (validation AUC %.4f, eval AUC %.4f): %s; table in %s", best["trial"],
                 best["valid_auc"], best["eval_auc"], best["flags"], os.path.join(out, af.TRIALS_CSV))
    return rows


def _clear_keras() -> None:
    import keras

    keras.backend.clear_session()


def _write(out: str, rows: list[dict]) -> None:
    import io

    import tensorflow as tf

    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=list(rows[0]))
    writer.writeheader()
    writer.writerows(rows)
    best = max(rows, key=lambda r: r["valid_auc"])
    files = {af.TRIALS_CSV: buf.getvalue(), af.TRIALS_JSON: json.dumps(rows, indent=2),
             af.BEST_TRIAL: json.dumps({"selected_on": "valid", **best}, indent=2)}
    for name, text in files.items():
        with tf.io.gfile.GFile(os.path.join(out, name), "w") as f:
            f.write(text)


if __name__ == "__main__":
    run()
