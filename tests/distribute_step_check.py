"""Helper of tests/test_distribute.py, run in its own process with ``CTRFLOW_LOGICAL_CPUS=2``: for each model config
(JSON list in argv[1]), two epochs on one device and on two mirrored replicas from the same weights and global
batches; prints a JSON list of {max_abs_diff, iterations, replicas, indexed_slices}."""
import json
import sys
from pathlib import Path

from ctrflow.model import distribute as dist

placement = dist.resolve_placement("mirrored")  # before any TensorFlow op

import keras  # noqa: E402
import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402

sys.path.insert(0, str(Path(__file__).parent))
from test_models import LAYOUT, SMALL, make_features, make_labels  # noqa: E402

from ctrflow.model.config import ModelConfig  # noqa: E402
from ctrflow.model.models import build_model, compile_model  # noqa: E402

GLOBAL_BATCH = 64
x = make_features(LAYOUT, 100, seed=1)
y = make_labels(x)
dataset = tf.data.Dataset.from_tensor_slices((x, y)).batch(GLOBAL_BATCH)


def compiled(config: ModelConfig, scope):
    keras.utils.set_random_seed(0)
    with scope:
        return compile_model(build_model(LAYOUT, config), config)


def reduces_indexed_slices(model) -> bool:
    """Whether the all-reduce keeps an embedding gradient as ``IndexedSlices`` (rows, not the whole table)."""
    def step(features):
        with tf.GradientTape() as tape:
            loss = tf.reduce_sum(model(features, training=True))
        grads = tape.gradient(loss, model.trainable_variables)
        sparse = [g for g in grads if isinstance(g, tf.IndexedSlices)]
        reduced = tf.distribute.get_replica_context().all_reduce(tf.distribute.ReduceOp.SUM, sparse)
        return tf.constant(bool(sparse) and all(isinstance(g, tf.IndexedSlices) for g in reduced))

    features = next(iter(dist.distributed_dataset(placement, dataset.map(lambda f, _: f), global_batch=GLOBAL_BATCH,
                                                  num_files=1)))
    result = placement.strategy.run(tf.function(step), args=(features,))
    return all(bool(r) for r in placement.strategy.experimental_local_results(result))


results = []
for options in json.loads(sys.argv[1]):
    config = ModelConfig(**{**SMALL, **options})
    single = compiled(config, dist.ONE_DEVICE.scope())
    mirrored = compiled(config, placement.scope())
    mirrored.set_weights(single.get_weights())
    dist.prepare_model(mirrored, placement)  # as model.train does
    single.fit(dataset, epochs=2, verbose=0, shuffle=False)
    mirrored.fit(dist.distributed_dataset(placement, dataset, global_batch=GLOBAL_BATCH, num_files=1),
                 epochs=2, verbose=0, shuffle=False)
    diff = max(float(np.max(np.abs(a - b))) for a, b in zip(single.get_weights(), mirrored.get_weights()))
    results.append({"max_abs_diff": diff, "replicas": placement.replicas,
                    "iterations": [int(single.optimizer.iterations.numpy()),
                                   int(mirrored.optimizer.iterations.numpy())],
                    "indexed_slices": reduces_indexed_slices(mirrored)})
print(json.dumps(results))
