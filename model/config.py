"""``ModelConfig``: every model/training option in one typed, serialisable place.

One dataclass feeds YAML files, the CLI and the saved run metadata, so an
option added here is automatically a flag (``add_argparse_args``) and a YAML key.
Kept free of module-level TensorFlow imports: building a config must stay cheap.
"""
from __future__ import annotations

import argparse
import dataclasses
import typing
from typing import Any

import yaml

MODELS = ("deepfm", "wide_deep", "lr")
RESIDUALS = ("none", "additive", "gated", "concat")
ACTIVATIONS = ("relu", "gelu", "leaky_relu", "prelu", "tanh", "sigmoid")
NORMS = ("none", "batch", "layer")
LOSSES = ("pointwise", "pairwise")
OPTIMIZERS = ("adam", "adagrad", "sgd", "ftrl", "adamw")
LR_SCHEDULES = ("constant", "cosine", "exponential", "plateau")
CALIBRATIONS = ("none", "platt")
NUMERIC_ENCODINGS = ("interpolate", "ple", "bucket")


def _opt(default: Any, help: str, choices: tuple[str, ...] | None = None) -> Any:
    """A dataclass field carrying its CLI help text (and allowed values)."""
    return dataclasses.field(default=default, metadata={"help": help, "choices": choices})


@dataclasses.dataclass(frozen=True)
class ModelConfig:
    """Architecture, loss and optimiser options for ``build_model``/``compile_model``."""

    model: str = _opt("deepfm", "Model family.", MODELS)
    embedding_dim: int = _opt(
        64, "Width of each field embedding (deepfm, wide_deep). 64 (was 16; NFM's and AFM's width for frappe and "
        "MovieLens): validation AUC 64 vs 16 (3-model ensembles; frappe and MovieLens the mean of seeds 42 and 7): "
        "frappe 0.9585 vs 0.9548 (eval 0.9554 vs 0.9522, LightGBM 0.9560), MovieLens 0.7909 vs 0.7942, census "
        "0.9382 vs 0.9386; Criteo / Avazu 3-fold cross-validation 0.7307 vs 0.7342 / 0.7022 vs 0.7032. A trade: "
        "with 16 frappe misses LightGBM by 0.005, with 64 every benchmark dataset is within 0.002 of it. 4x the "
        "embedding memory.")
    numeric_encoding: str = _opt(
        "interpolate", "How a bucketized numeric enters the linear term and its embedding, from its bucket id and "
        "its position in the bucket (preprocess output `<name>__position`): 'interpolate' (linear between the "
        "rows of bucket i and i+1: piecewise-linear in the value), 'ple' (the same functions as sums of per-bucket "
        "increments, Gorishniy et al. 2022) or 'bucket' (the bucket's own row: a step per bucket). Validation "
        "AUC interpolate / ple / bucket: census 0.9378 / 0.9373 / 0.9346, MovieLens 0.7953 / 0.7932 / 0.7918, "
        "Criteo sample 0.7307 / 0.7111 / 0.7323 (720 rows: interpolate vs bucket over 3 seeds 0.7299 vs 0.7325, "
        "noise). Data preprocessed before positions "
        "existed, and the global_index layout, always use bucket rows.", NUMERIC_ENCODINGS)
    embedding_init_stddev: float = _opt(0.01, "Stddev of the normal init of embedding rows.")
    embedding_l2: float = _opt(0.0, "L2 on the embedding rows looked up in the batch.")
    linear_l2: float = _opt(0.0, "L2 on the first-order (linear) weights looked up in the batch.")
    hidden_units: tuple[int, ...] = _opt((256, 128, 64), "Widths of the DNN blocks.")
    residual: str = _opt("none", "DNN block form: plain ('none') or a residual form.", RESIDUALS)
    residual_gate_init: float = _opt(0.1, "Initial beta of 'gated' residual blocks (w*x + beta*f(x)).")
    activation: str = _opt("relu", "DNN activation.", ACTIVATIONS)
    dropout: float = _opt(0.1, "Dropout rate inside DNN blocks.")
    norm: str = _opt("none", "Normalisation inside DNN blocks.", NORMS)
    kernel_l2: float = _opt(0.0, "L2 on DNN kernels.")
    hadamard_groups: tuple[str, ...] = _opt(
        (), "Two SparseFeature.group names (e.g. user item): their mean embeddings' "
        "elementwise product is fed to the DNN.")
    loss: str = _opt("pointwise", "Pointwise log loss, or pairwise logistic loss on "
                     "{'pos','neg'} feature pairs.", LOSSES)
    rdrop_alpha: float = _opt(0.0, "R-Drop weight: >0 runs two dropout passes and adds "
                              "alpha * symmetric KL between them (pointwise loss only).")
    negative_keep_rate: float = _opt(1.0, "Share of negatives kept by downsampling; "
                                     "CTRModel.probabilities() undoes it.")
    positive_weight: float = _opt(1.0, "Class weight of positive examples in the pointwise loss; "
                                  "CTRModel.probabilities() undoes the odds shift it causes.")
    optimizer: str = _opt("adam", "Main optimiser.", OPTIMIZERS)
    learning_rate: float = _opt(1e-2, "Initial learning rate of the main optimiser (1e-2 with the plateau schedule: "
                                "best validation AUC on the census, frappe, MovieLens and Avazu samples, "
                                "BENCHMARKS.md quality).")
    lr_schedule: str = _opt("plateau", "Learning-rate schedule ('plateau': cut by plateau_factor when validation "
                            "AUC stalls; frappe's AUC was still rising at the last epoch with a constant rate).",
                            LR_SCHEDULES)
    decay_steps: int = _opt(10000, "Steps of the cosine/exponential schedule.")
    decay_rate: float = _opt(0.96, "Exponential schedule: factor per decay_steps.")
    plateau_factor: float = _opt(0.3, "Plateau schedule: the learning rate is multiplied by this after "
                                 "plateau_patience epochs without a validation AUC gain.")
    plateau_patience: int = _opt(1, "Plateau schedule: epochs without a validation AUC gain before the "
                                 "learning rate drops.")
    weight_decay: float = _opt(0.004, "Decoupled weight decay (adamw only).")
    row_weight_decay: float = _opt(0.5, "Decoupled (AdamW-style) weight decay of the embedding and linear rows a "
                                   "batch touches: each is shrunk by (1 - lr * wd) per step, with exact catch-up "
                                   "for the steps it was not touched (adam with sparse updates only; ignored with "
                                   "a warning otherwise; see model.optimizers).")
    linear_row_weight_decay: float | None = _opt(
        0.0, "Row weight decay of the linear (first-order and cross) weights; None: row_weight_decay. 0 (the "
        "default) lets a first-order weight or cross keep what it learned about an id seen about once an epoch "
        "(the decay pulls it back between visits); the embeddings keep row_weight_decay. Validation AUC, 0 vs "
        "0.5, 3-model ensembles (benchmarks/quality.py): frappe (user x item cross) 0.9538 vs 0.9520, MovieLens "
        "0.7910 vs 0.7887, Criteo sample 0.7727 vs 0.7725, census 0.9319 vs 0.9327, Avazu sample 0.6613 vs "
        "0.6620 (~800 validation rows: standard error ~0.02).")
    clipnorm: float | None = _opt(None, "Clip each gradient to this norm (every optimiser).")
    sparse_updates: bool = _opt(True, "Update only the embedding rows a batch touched (lazy Adam, sparse "
                                "Adagrad/FTRL): step time independent of table size. Off: Keras' dense updates.")
    wide_optimizer: str | None = _opt(None, "Separate optimiser for the linear/wide weights "
                                      "(e.g. ftrl for Wide&Deep); default: the main one.",
                                      OPTIMIZERS)
    wide_learning_rate: float = _opt(0.05, "Learning rate of the wide optimiser.")
    ftrl_l1: float = _opt(0.0, "FTRL L1 regularisation strength.")
    ftrl_l2: float = _opt(0.0, "FTRL L2 regularisation strength.")
    calibration: str = _opt("platt", "Post-hoc calibration of the exported probabilities: 'platt' fits "
                            "sigmoid(a * log-odds + b) on the trainer's validation holdout (a no-op without one; "
                            "AUC unchanged).", CALIBRATIONS)
    auc_num_thresholds: int = _opt(10000, "Thresholds of the streaming AUC metric.")
    jit_compile: bool = _opt(False, "Compile train/eval steps with XLA (uses dense optimiser updates: "
                             "XLA recompiles for every distinct number of touched rows).")
    steps_per_execution: int = _opt(1, "Batches run per tf.function call.")

    def __post_init__(self) -> None:
        for f in dataclasses.fields(self):
            choices = f.metadata["choices"]
            value = getattr(self, f.name)
            if choices and value is not None and value not in choices:
                raise ValueError(f"{f.name}={value!r}; expected one of {choices}")
        if self.hadamard_groups and len(self.hadamard_groups) != 2:
            raise ValueError(f"hadamard_groups needs exactly 2 groups, got {self.hadamard_groups}")
        if self.rdrop_alpha > 0 and self.loss != "pointwise":
            raise ValueError("rdrop_alpha > 0 requires loss='pointwise'")
        if not 0.0 < self.negative_keep_rate <= 1.0:
            raise ValueError(f"negative_keep_rate must be in (0, 1], got {self.negative_keep_rate}")
        if self.row_weight_decay < 0:
            raise ValueError(f"row_weight_decay must be >= 0, got {self.row_weight_decay}")
        if self.linear_row_weight_decay is not None and self.linear_row_weight_decay < 0:
            raise ValueError(f"linear_row_weight_decay must be >= 0, got {self.linear_row_weight_decay}")
        if not 0.0 < self.plateau_factor < 1.0:
            raise ValueError(f"plateau_factor must be in (0, 1), got {self.plateau_factor}")
        if self.plateau_patience < 0:
            raise ValueError(f"plateau_patience must be >= 0, got {self.plateau_patience}")
        if not self.positive_weight > 0.0:
            raise ValueError(f"positive_weight must be > 0, got {self.positive_weight}")

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "ModelConfig":
        """Build from plain values (YAML/JSON); unknown keys are an error (typos)."""
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = set(d) - names
        if unknown:
            raise ValueError(f"unknown ModelConfig keys: {sorted(unknown)}")
        return cls(**{k: tuple(v) if isinstance(v, list) else v for k, v in d.items()})

    @classmethod
    def from_yaml(cls, path: str) -> "ModelConfig":
        """Reads a local or gs:// YAML file (TensorFlow is imported only here)."""
        import tensorflow as tf

        with tf.io.gfile.GFile(path) as f:
            return cls.from_dict(yaml.safe_load(f.read()) or {})

    def to_dict(self) -> dict[str, Any]:
        """Plain YAML/JSON-friendly values (tuples become lists)."""
        return {k: list(v) if isinstance(v, tuple) else v for k, v in dataclasses.asdict(self).items()}

    @classmethod
    def add_argparse_args(cls, parser: argparse.ArgumentParser | argparse._ArgumentGroup) -> None:
        """Add one ``--flag`` per field; unset flags stay ``None`` (see ``from_args``).

        A parser gets a "model" group; an argument group is filled as given.
        """
        is_parser = isinstance(parser, argparse.ArgumentParser)
        group = parser.add_argument_group("model") if is_parser else parser
        hints = typing.get_type_hints(cls)
        for f in dataclasses.fields(cls):
            flag = "--" + f.name.replace("_", "-")
            help_text = f"{f.metadata['help']} (default: {f.default})"
            kind = hints[f.name]
            kwargs: dict[str, Any] = {"dest": f.name, "default": None, "help": help_text}
            if kind is bool:
                kwargs["action"] = argparse.BooleanOptionalAction
            elif typing.get_origin(kind) is tuple:
                kwargs.update(nargs="*", type=typing.get_args(kind)[0])
            else:
                scalar = [t for t in typing.get_args(kind) if t is not type(None)] or [kind]
                kwargs.update(type=scalar[0], choices=f.metadata["choices"])
            group.add_argument(flag, **kwargs)

    @classmethod
    def from_args(cls, args: argparse.Namespace, base: "ModelConfig | None" = None) -> "ModelConfig":
        """Override ``base`` (e.g. from a YAML file) with the flags actually given."""
        base = base or cls()
        given = {f.name: getattr(args, f.name) for f in dataclasses.fields(cls)
                 if getattr(args, f.name, None) is not None}
        return cls.from_dict({**base.to_dict(), **given})
