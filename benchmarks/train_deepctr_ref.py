"""One DeepFM training run, ctrflow's or DeepCTR's, on the same preprocessed split; prints JSON.

Both see exactly the same inputs: the transformed ids in a ``ctrflow
preprocess`` output (train split to fit, eval split to test). DeepCTR gets
them as in-memory numpy arrays (its usual ``model.fit(dict, y)`` use) with one
``SparseFeat`` per field; ctrflow reads the TFRecords through its tf.data
pipeline (cached after the first epoch). Same architecture and optimisation:
linear + FM + DNN ``hidden_units``, ``embedding_dim``, Adam(lr), log loss,
no dropout, L2 1e-5 on embeddings and linear weights (DeepCTR's defaults),
``epochs`` full passes, no early stopping, metrics computed once at the end
by ``model.metrics``.

One difference is inherent to each library: DeepCTR's L2 is a Keras
regulariser on the *whole* tables (and Keras' dense Adam touches every row
each step); ctrflow penalises the looked-up rows and updates only them.

Runs in its own process (``python -m benchmarks.train_deepctr_ref ...``):
DeepCTR is tf.keras (tf_keras) based and must not share a process with the
Keras 3 run being timed. Needs ``pip install deepctr`` for ``--impl deepctr``.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np  # noqa: E402


def load_split(data_dir: str, split: str) -> tuple[dict[str, np.ndarray], np.ndarray, object]:
    """All rows of a preprocessed split as numpy ``(features, labels, layout)``."""
    import tensorflow_transform as tft

    from ctrflow.model.inputs import make_dataset, split_files
    from ctrflow.pipeline.layout import FeatureLayout

    with open(os.path.join(data_dir, "layout.json")) as f:
        layout = FeatureLayout.from_json(f.read())
    spec = tft.TFTransformOutput(data_dir).transformed_feature_spec()
    ds = make_dataset(split_files(data_dir, split), spec, layout, 65_536, shuffle=False)
    xs, ys = [], []
    for x, y in ds:
        xs.append({k: v.numpy() for k, v in x.items()})
        ys.append(y.numpy())
    return {k: np.concatenate([x[k] for x in xs]) for k in xs[0]}, np.concatenate(ys), layout


def run_deepctr(args: argparse.Namespace) -> dict:
    os.environ["TF_USE_LEGACY_KERAS"] = "1"
    import tensorflow as tf
    from deepctr.feature_column import SparseFeat
    from deepctr.models import DeepFM

    from ctrflow.model import metrics as mt

    x_train, y_train, layout = load_split(args.data, "train")
    x_test, y_test, _ = load_split(args.data, "eval")
    columns = [SparseFeat(f.name, vocabulary_size=f.num_ids, embedding_dim=args.embedding_dim) for f in layout.sparse]
    tf.random.set_seed(args.seed)
    model = DeepFM(columns, columns, dnn_hidden_units=tuple(args.hidden_units), l2_reg_embedding=1e-5,
                   l2_reg_linear=1e-5, dnn_dropout=0.0, seed=args.seed, task="binary")
    model.compile(tf.keras.optimizers.Adam(args.learning_rate), "binary_crossentropy")
    names = [f.name for f in layout.sparse]
    start = time.perf_counter()
    model.fit({n: x_train[n] for n in names}, y_train, batch_size=args.batch_size, epochs=args.epochs,
              shuffle=True, verbose=0)
    seconds = time.perf_counter() - start
    probs = model.predict({n: x_test[n] for n in names}, batch_size=8192, verbose=0).reshape(-1)
    return {**mt.summary(y_test, probs), "train_seconds": seconds,
            "examples_per_second": len(y_train) * args.epochs / seconds}


def run_ctrflow(args: argparse.Namespace) -> dict:
    import keras
    import tensorflow_transform as tft

    from ctrflow.model import metrics as mt
    from ctrflow.model.config import ModelConfig
    from ctrflow.model.inputs import make_dataset, split_files
    from ctrflow.model.models import build_model, compile_model
    from ctrflow.model.train import predict_split
    from ctrflow.pipeline.layout import FeatureLayout

    keras.utils.set_random_seed(args.seed)
    with open(os.path.join(args.data, "layout.json")) as f:
        layout = FeatureLayout.from_json(f.read())
    spec = tft.TFTransformOutput(args.data).transformed_feature_spec()
    config = ModelConfig(model="deepfm", embedding_dim=args.embedding_dim, hidden_units=tuple(args.hidden_units),
                         dropout=0.0, embedding_l2=1e-5, linear_l2=1e-5, row_weight_decay=0.0, optimizer="adam",
                         learning_rate=args.learning_rate, sparse_updates=not args.dense_updates,
                         numeric_encoding=args.numeric_encoding)
    model = compile_model(build_model(layout, config), config)
    train = make_dataset(split_files(args.data, "train"), spec, layout, args.batch_size, shuffle=True,
                         seed=args.seed, cache=True)
    rows = sum(int(y.shape[0]) for _, y in train)  # also fills the cache, like DeepCTR's in-memory arrays
    epochs = _EpochTimes()
    start = time.perf_counter()
    model.fit(train, epochs=args.epochs, verbose=0, callbacks=[epochs])
    seconds = time.perf_counter() - start
    labels, probs = predict_split(model, make_dataset(split_files(args.data, "eval"), spec, layout, 8192,
                                                      shuffle=False))
    floor = step_floor(model, train) if args.floor else None
    return {**mt.summary(labels, probs), "train_seconds": seconds, "examples_per_second": rows * args.epochs / seconds,
            "epoch_seconds": epochs.seconds, "floor_epoch_seconds": floor}


class _EpochTimes:
    """A Keras callback keeping each epoch's wall seconds."""

    def __new__(cls):
        import keras

        class EpochTimes(keras.callbacks.Callback):
            def __init__(self):
                super().__init__()
                self.seconds: list[float] = []

            def on_epoch_begin(self, epoch, logs=None):
                self._t = time.perf_counter()

            def on_epoch_end(self, epoch, logs=None):
                self.seconds.append(time.perf_counter() - self._t)

        return EpochTimes()


def step_floor(model, dataset) -> float:
    """Seconds of one epoch of the compiled train step alone: every batch already in memory as tensors.

    The same Keras train function ``fit`` runs, fed from a Python list instead
    of tf.data: what remains is the model's forward/backward pass and the
    optimizer update. Measured after the real epochs (so traced and warm).
    """
    batches = list(dataset)  # the cached epoch, as eager tensors
    train_fn = model.make_train_function()
    train_fn(iter(batches[:1]))  # warm up
    start = time.perf_counter()
    it = iter(batches)
    for _ in range(len(batches)):
        train_fn(it)
    return time.perf_counter() - start


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--impl", choices=("ctrflow", "deepctr"), required=True)
    p.add_argument("--data", required=True, help="a `ctrflow preprocess` output (train + eval splits)")
    p.add_argument("--epochs", type=int, default=3)
    p.add_argument("--batch-size", type=int, default=1024)
    p.add_argument("--embedding-dim", type=int, default=4, help="DeepCTR's SparseFeat default")
    p.add_argument("--hidden-units", type=int, nargs="+", default=[256, 128, 64])
    p.add_argument("--learning-rate", type=float, default=1e-3)
    p.add_argument("--seed", type=int, default=1024)
    p.add_argument("--dense-updates", action="store_true", help="ctrflow with Keras' dense optimiser updates")
    p.add_argument("--numeric-encoding", default="bucket", choices=("bucket", "interpolate", "ple"),
                   help="ctrflow: 'bucket' is one id per field, like DeepCTR; 'interpolate' is ctrflow's default")
    p.add_argument("--floor", action="store_true",
                   help="ctrflow: also time one more epoch of the train step alone on in-memory batches")
    args = p.parse_args(argv)
    from ctrflow.pipeline.artifacts import live_dir

    args.data = live_dir(args.data)  # the published version (OUTPUT/v=<run>/) of the preprocess output
    result = run_deepctr(args) if args.impl == "deepctr" else run_ctrflow(args)
    json.dump(result, sys.stdout)
    print()


if __name__ == "__main__":
    main()
