"""Training throughput (examples/s) of ctrflow models on in-memory Criteo-shaped batches.

Isolates the train step from the input pipeline: features are random ids
already in memory, so the figure is what the model + optimiser sustain.
``criteo_layout(table_rows)`` spreads ``table_rows`` ids over 26 categorical
fields like Criteo's (skewed) cardinalities, plus 13 bucketized counts.

    python -m benchmarks.train_speed --batch 1024 --table-rows 1000000   # prints one JSON line
"""
from __future__ import annotations

import argparse
import json
import os
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np  # noqa: E402

from ctrflow.pipeline.layout import FeatureLayout, SparseFeature  # noqa: E402

CRITEO_SHARE = np.array([1460, 583, 10131227, 2202608, 305, 24, 12517, 633, 3, 93145, 5683, 8351593, 3194,
                         27, 14992, 5461306, 10, 5652, 2173, 4, 7046547, 18, 15, 286181, 105, 142572], float)


def criteo_layout(table_rows: int) -> FeatureLayout:
    """13 bucketized counts (21 ids) + 26 categoricals with ``table_rows`` ids in Criteo's proportions."""
    sizes = np.maximum(2, np.round(CRITEO_SHARE / CRITEO_SHARE.sum() * table_rows)).astype(int)
    sparse = [SparseFeature(f"I{i}", 21) for i in range(1, 14)]
    sparse += [SparseFeature(f"C{i}", int(n)) for i, n in enumerate(sizes, 1)]
    return FeatureLayout(sparse=tuple(sparse), dense=(), label="label")


def random_batches(layout: FeatureLayout, batch: int, count: int, seed: int = 0) -> list[tuple[dict, np.ndarray]]:
    """``count`` batches of Zipf-like ids (real CTR ids are head-heavy)."""
    rng = np.random.default_rng(seed)
    out = []
    for _ in range(count):
        x = {f.name: np.minimum(rng.zipf(1.3, batch) - 1, f.num_ids - 1).astype(np.int64) for f in layout.sparse}
        out.append((x, rng.integers(0, 2, batch).astype(np.float32)))
    return out


def throughput(layout: FeatureLayout, config, batch: int, steps: int = 30, warmup: int = 5) -> float:
    """Examples/s of ``model.train_on_batch``-equivalent steps after ``warmup`` compiled steps."""
    import tensorflow as tf

    from ctrflow.model.models import build_model, compile_model

    model = compile_model(build_model(layout, config), config)
    batches = random_batches(layout, batch, 8)
    ds = tf.data.Dataset.from_tensor_slices(
        ({k: np.stack([b[0][k] for b in batches]) for k in batches[0][0]}, np.stack([b[1] for b in batches])))
    ds = ds.repeat().prefetch(4)
    model.fit(ds, steps_per_epoch=warmup, epochs=1, verbose=0)
    start = time.perf_counter()
    model.fit(ds, steps_per_epoch=steps, epochs=1, verbose=0)
    return steps * batch / (time.perf_counter() - start)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--batch", type=int, default=1024)
    p.add_argument("--table-rows", type=int, default=1_000_000)
    p.add_argument("--steps", type=int, default=30)
    p.add_argument("--dense-updates", action="store_true", help="Keras' dense optimiser updates")
    p.add_argument("--optimizer", default="adam")
    p.add_argument("--embedding-dim", type=int, default=16)
    args = p.parse_args()
    from ctrflow.model.config import ModelConfig

    config = ModelConfig(model="deepfm", embedding_dim=args.embedding_dim, optimizer=args.optimizer,
                         sparse_updates=not args.dense_updates, dropout=0.0)
    rate = throughput(criteo_layout(args.table_rows), config, args.batch, args.steps)
    print(json.dumps({"batch": args.batch, "table_rows": args.table_rows, "sparse_updates": config.sparse_updates,
                      "examples_per_second": rate}))


if __name__ == "__main__":
    main()
