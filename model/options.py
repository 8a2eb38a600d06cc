"""Typed options of ``ctrflow train`` and ``ctrflow evaluate``, built once at the CLI.

Like ``ModelConfig`` (the model's own options), these frozen dataclasses carry
their flags' help (``ctrflow.common.flags``), validate themselves in
``__post_init__``, and are written whole to ``config.json`` / ``metrics.json``.
"""
from __future__ import annotations

import dataclasses

from ctrflow.common.errors import OptionsError
from ctrflow.common.flags import option, to_dict


@dataclasses.dataclass(frozen=True, kw_only=True)
class TrainerOptions:
    """Where the trainer reads and writes, and how it feeds and stops the model."""

    data: str = option(help="output directory of `ctrflow preprocess`")
    output: str = option(help="model directory (MODEL_DIR)")
    config: str | None = option(None, help="model config YAML (keys: the model options below, with underscores); "
                                           "command-line flags override it")
    batch_size: int = option(512, help="training batch size (pairs for the pairwise loss)")
    eval_batch_size: int = option(8192, help="batch size of evaluation passes")
    epochs: int = option(30, help="maximum epochs (early stopping usually ends far sooner: the default flags "
                                  "select census's epoch 4, BENCHMARKS.md quality)")
    patience: int = option(3, help="epochs without validation AUC improvement before stopping (one more than "
                                   "the plateau schedule's, so a learning-rate cut gets its chance)")
    valid_fraction: float = option(0.1, help="share of the training records (by a stable hash of each record) held "
                                             "out for early stopping, model selection and Platt calibration, so "
                                             "the eval split is only reported; 0 selects on eval (optimistic)")
    steps_per_epoch: int | None = option(None, help="batches per epoch (default: one pass over the training data)")
    seed: int = option(42, help="seed for init, shuffling, sampling and dropout")
    ensemble: int = option(3, help="models trained with seeds seed, seed+1, ...; the export serves the mean of "
                                   "their probabilities (model.ensemble), at K times the training and model "
                                   "scoring cost: the seeds' errors partly cancel; "
                                   "member k>0 writes under MODEL_DIR/members/k")
    deterministic: bool = option(False, help="deterministic TF ops: same metrics on every run with the same seed "
                                             "(slower)")
    cache: bool = option(False, help="parse the training data once and keep its features in memory (much less CPU "
                                     "per epoch; ~8 bytes per id)")
    shuffle_buffer: int = option(100_000, help="records in the shuffle buffer without --cache")
    pair_window: int = option(65_536, help="pairwise loss: records per window within which (positive, negative) "
                                           "pairs of one group are formed (see model.inputs)")
    resume: bool = option(False, help="resume an interrupted run from MODEL_DIR/checkpoints/backup (weights, "
                                      "optimizer state and epoch)")
    distribute: str = option("auto", choices=("auto", "none", "mirrored", "multi-worker"),
                             help="tf.distribute strategy: auto = MultiWorkerMirroredStrategy when TF_CONFIG names "
                                  "several tasks, MirroredStrategy over several local GPUs, else one device; "
                                  "--batch-size stays the global batch (model.distribute)")
    verbose: int = option(2, choices=(0, 1, 2), help="Keras progress output: 0 silent, 1 progress bar, 2 one line "
                                                     "per epoch")
    warm_start: str | None = option(
        None, metavar="MODEL_DIR", help="start from a previous model: embedding/linear rows copied by token through "
                                        "both vocabularies, other weights where shapes match (model.warm_start)")
    baseline: str | None = option(
        None, metavar="MODEL_DIR", help="also score this model on the same eval rows and write promotion.json "
                                        "(model.promotion)")
    require_better: float | None = option(
        None, metavar="TOL", help="with --baseline: exit with status 3 when the new eval AUC is below the "
                                  "baseline's by more than TOL")
    slice_by: tuple[str, ...] = option(
        (), metavar="COL[,COL...]", help="with --max-slice-auc-drop: the gate's slice columns (single-valued "
                                         "vocabulary or bucketized features, read back from the eval split; "
                                         "top 20 values each, the rest as '(other)')")
    max_slice_auc_drop: float | None = option(
        None, metavar="D", help="with --baseline and --slice-by: not promoted (exit 3) when the new AUC on any "
                                "slice of at least --min-slice-rows rows is below the baseline's by more than D; "
                                "promotion.json names those slices (model.slice_gate)")
    min_slice_rows: int = option(1000, metavar="N", help="smallest slice the --max-slice-auc-drop rule checks")
    serving_base: str | None = option(
        None, metavar="BASE", help="also copy the export to BASE/<N>/, N = the highest version there + 1 (1 at "
                                   "first): TF Serving's --model_base_path and Vertex AI's layout; a model the "
                                   "--baseline gate does not promote is not copied (model.serving_layout)")

    def __post_init__(self) -> None:
        for name in ("batch_size", "eval_batch_size", "epochs", "shuffle_buffer", "pair_window", "ensemble"):
            if getattr(self, name) <= 0:
                raise OptionsError(f"--{name.replace('_', '-')} must be > 0, got {getattr(self, name)}")
        if not 0.0 <= self.valid_fraction < 1.0:
            raise OptionsError(f"--valid-fraction must be in [0, 1), got {self.valid_fraction}")
        if self.patience < 0:
            raise OptionsError(f"--patience must be >= 0, got {self.patience}")
        if self.steps_per_epoch is not None and self.steps_per_epoch <= 0:
            raise OptionsError(f"--steps-per-epoch must be > 0, got {self.steps_per_epoch}")
        if self.require_better is not None and not self.baseline:
            raise OptionsError("--require-better TOL compares against --baseline MODEL_DIR; give both")
        if self.max_slice_auc_drop is not None and (not self.baseline or not self.slice_by):
            raise OptionsError("--max-slice-auc-drop D compares slices against --baseline MODEL_DIR; give both, "
                               "and --slice-by COL")
        if self.slice_by and self.max_slice_auc_drop is None:
            raise OptionsError("--slice-by on train is the promotion gate's: give --max-slice-auc-drop D (and "
                               "--baseline); `ctrflow evaluate --slice-by` reports slices")
        if self.min_slice_rows <= 0:
            raise OptionsError(f"--min-slice-rows must be > 0, got {self.min_slice_rows}")

    def to_dict(self) -> dict:
        return to_dict(self)


@dataclasses.dataclass(frozen=True, kw_only=True)
class EvaluateOptions:
    """Which model, which preprocessed split, and where the metrics and plots go."""

    model: str = option(help="model directory of `ctrflow train` (or its export/)")
    data: str = option(help="output directory of `ctrflow preprocess`")
    split: str = option("eval", choices=("eval", "train"), help="split to evaluate")
    output: str | None = option(None, help="where metrics.json and the plots go (default: MODEL/evaluation/SPLIT)")
    batch_size: int = option(8192, help="examples per scoring call")
    bins: int = option(20, help="calibration bins")
    importance_rows: int = option(20000, help="eval rows for permutation importance (importance.json/.png); 0 skips "
                                             "it")
    slice_by: tuple[str, ...] = option(
        (), metavar="COL[,COL...]", help="also report AUC (95%% DeLong interval), log loss, calibration and rows per "
                                         "value of these columns (metrics.json 'slices', index.html worst first). "
                                         "The eval split keeps transformed features only: single-valued vocabulary "
                                         "columns come back as their token (rare ones as '(out of vocabulary)'), "
                                         "bucketized numerics as their bucket; for any other raw column score the "
                                         "table (`ctrflow score`) and run `ctrflow monitor --slice-by`")
    slice_top: int = option(20, metavar="N", help="top N values by rows per slice column; the rest is '(other)'")
    slice_min_rows: int = option(100, metavar="N", help="no AUC for a slice with fewer rows (the table says so)")

    def __post_init__(self) -> None:
        if self.batch_size <= 0 or self.bins <= 0:
            raise OptionsError("--batch-size and --bins must be > 0")
        if self.slice_top <= 0 or self.slice_min_rows <= 0:
            raise OptionsError("--slice-top and --slice-min-rows must be > 0")
        if self.importance_rows < 0:
            raise OptionsError(f"--importance-rows must be >= 0, got {self.importance_rows}")

    def to_dict(self) -> dict:
        return to_dict(self)
