"""``ModelConfig``: every model/training option in one typed, serialisable place.

One dataclass feeds YAML files, the CLI and the saved run metadata, so an
option added here is automatically a flag (``add_argparse_args``) and a YAML key.
Kept free of module-level TensorFlow imports: building a config must stay cheap.
"""
from __future__ import annotations

import argparse
import dataclasses
import re
import typing
from typing import Any

import yaml

from ctrflow.common.errors import OptionsError

MODELS = ("deepfm", "wide_deep", "lr", "dcnv2")
# ``--model package.module:function``: the caller's own Keras model on ctrflow's features (models.custom_model)
CUSTOM_MODEL = re.compile(r"[A-Za-z_]\w*(\.[A-Za-z_]\w*)*:[A-Za-z_]\w*(\.[A-Za-z_]\w*)*")
CROSS_STRUCTURES = ("stacked", "parallel")
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

    model: str = _opt("deepfm", f"Model family: one of {', '.join(MODELS)}, or package.module:function, a "
                      "function build(layout, config) -> keras.Model that maps ctrflow's feature dict to one logit "
                      "per row (README: your own model).")
    embedding_dim: int = _opt(
        64, "Width of each field embedding (deepfm, wide_deep). 64 (was 16; NFM's and AFM's width for frappe and "
        "MovieLens): validation AUC 64 vs 16 (BENCHMARKS.md, quality, settings tried): frappe 0.9589 vs 0.9528, "
        "census 0.9382 vs 0.9386, MovieLens 0.7905 vs 0.7943, Criteo sample 0.7702 vs 0.7727, Avazu sample "
        "0.6793 vs 0.6613. A trade: with 16 frappe misses LightGBM by 0.005 on eval (0.9509 vs 0.9560), with 64 "
        "every benchmark dataset is within 0.002 of it. 4x the embedding memory.")
    numeric_encoding: str = _opt(
        "interpolate", "How a bucketized numeric enters the linear term and its embedding, from its bucket id and "
        "its position in the bucket (preprocess output `<name>__position`): 'interpolate' (linear between the "
        "rows of bucket i and i+1: piecewise-linear in the value), 'ple' (the same functions as sums of per-bucket "
        "increments, Gorishniy et al. 2022) or 'bucket' (the bucket's own row: a step per bucket, so a value's "
        "score jumps at every bucket edge). Data preprocessed before positions "
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
    kernel_l2: float = _opt(0.0, "L2 on DNN (and DCN-V2 cross) kernels.")
    cross_layers: int = _opt(3, "dcnv2: cross layers x_{l+1} = x0 * (W x_l + b) + x_l (Wang et al. 2021) over the "
                             "DNN's input (field embeddings [+ Hadamard] [+ dense values]).")
    cross_structure: str = _opt("parallel", "dcnv2: 'stacked' feeds the cross network's output to the DNN; "
                                "'parallel' runs both on the same input and concatenates their outputs before "
                                "the head.", CROSS_STRUCTURES)
    cross_rank: int = _opt(0, "dcnv2: rank r of each cross kernel W = U V^T (2 * width * r weights instead of "
                           "width^2); 0: full rank.")
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
    learning_rate: float = _opt(1e-2, "Initial learning rate of the main optimiser (1e-2 goes with the plateau "
                                "schedule, which cuts it when validation AUC stalls).")
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
        "0.5 (BENCHMARKS.md, quality, settings tried): frappe (user x item cross) 0.9589 vs 0.9561, MovieLens "
        "0.7905 vs 0.7892, census 0.9382 vs 0.9390, Criteo sample 0.7702 vs 0.7709, Avazu sample 0.6793 vs "
        "0.6815 (about 800 validation rows each: standard error near 0.02).")
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

    @property
    def is_custom(self) -> bool:
        """``model`` names the caller's own builder (``package.module:function``), not a built-in family."""
        return self.model not in MODELS

    def __post_init__(self) -> None:
        for f in dataclasses.fields(self):
            choices = f.metadata["choices"]
            value = getattr(self, f.name)
            if choices and value is not None and value not in choices:
                raise ValueError(f"{f.name}={value!r}; expected one of {choices}")
        self._check_model()
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

    def _check_model(self) -> None:
        """``model`` and the options that only some models take."""
        if self.model not in MODELS and not CUSTOM_MODEL.fullmatch(str(self.model)):
            raise OptionsError(f"model={self.model!r}; expected one of {MODELS} or package.module:function")
        if self.cross_layers < 1:
            raise OptionsError(f"cross_layers must be >= 1, got {self.cross_layers}")
        if self.cross_rank < 0:
            raise OptionsError(f"cross_rank must be >= 0 (0: full rank), got {self.cross_rank}")
        if self.model in MODELS and self.model != "dcnv2":
            defaults = {f.name: f.default for f in dataclasses.fields(self) if f.name.startswith("cross_")}
            changed = [name for name, default in defaults.items() if getattr(self, name) != default]
            if changed:
                raise OptionsError(f"only model dcnv2 takes {', '.join(changed)} (model is {self.model})")
        if self.is_custom and self.wide_optimizer is not None:
            raise OptionsError(f"wide_optimizer needs ctrflow's linear part, which the custom model {self.model} "
                               "does not have")

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
