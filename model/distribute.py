"""Where ``ctrflow train`` runs: one device, several local devices, or several workers, read from the environment.

The scale-out engine is tf.distribute configured by ``TF_CONFIG``, the variable
that Vertex AI custom jobs, Kubeflow's TFJob and plain Kubernetes set on every
replica: a ``TF_CONFIG`` naming more than one task gives
``MultiWorkerMirroredStrategy``; more than one local GPU (or logical device)
gives ``MirroredStrategy``; anything else keeps the single-device path, with
no strategy object at all (so its speed is unchanged). ``--distribute``
overrides the ``auto`` choice.

``--batch-size`` stays the *global* batch: each of N replicas computes on
``global / N`` rows and the gradients are summed by the all-reduce, so 1 or N
replicas follow the same optimisation path up to float summation order.

``CTRFLOW_LOGICAL_CPUS=N`` (hidden, for tests and benchmarks on a machine
without GPUs) splits the CPU into N logical devices before TensorFlow
initialises, so ``auto`` mirrors over them as it would over N GPUs.
"""
from __future__ import annotations

import contextlib
import dataclasses
import json
import logging
import os
from collections.abc import Iterator, Mapping
from typing import Any

from ctrflow.common.errors import OptionsError

MODES = ("auto", "none", "mirrored", "multi-worker")
LOGICAL_CPUS_ENV = "CTRFLOW_LOGICAL_CPUS"
_WORKER_TASK_TYPES = ("chief", "worker")  # the task types that train; "evaluator"/"ps" are not supported


class DistributeError(OptionsError):
    """A ``--distribute`` choice the environment cannot honour."""


@dataclasses.dataclass(frozen=True)
class ClusterTask:
    """This process's place in ``TF_CONFIG``: how many training tasks, which one this is, and the chief's."""

    workers: int
    index: int  # 0 .. workers-1, over the chief (if any) then the workers, in TF_CONFIG's order
    is_chief: bool
    task_type: str


def read_cluster(environ: Mapping[str, str] = os.environ) -> ClusterTask | None:
    """The training tasks ``TF_CONFIG`` names, or None when it is unset or names one task.

    The chief is the ``chief`` task if the cluster has one, else worker 0: the
    convention of ``MultiWorkerMirroredStrategy`` and Keras's multi-worker guide.
    """
    text = environ.get("TF_CONFIG", "").strip()
    if not text:
        return None
    try:
        config = json.loads(text)
    except json.JSONDecodeError as e:
        raise DistributeError(f"TF_CONFIG is not JSON ({e.msg} at character {e.pos})") from None
    cluster, task = config.get("cluster") or {}, config.get("task") or {}
    unsupported = sorted(set(cluster) - set(_WORKER_TASK_TYPES))
    if unsupported:
        raise DistributeError(f"TF_CONFIG names task types {unsupported}: ctrflow trains with "
                              "MultiWorkerMirroredStrategy, whose cluster has only 'chief' and 'worker' tasks")
    order = [(t, i) for t in _WORKER_TASK_TYPES for i in range(len(cluster.get(t) or []))]
    if len(order) <= 1:
        return None
    task_type, task_index = task.get("type"), int(task.get("index", 0))
    if (task_type, task_index) not in order:
        raise DistributeError(f"TF_CONFIG's task {{'type': {task_type!r}, 'index': {task_index}}} is not in its "
                              f"cluster {sorted(cluster)}")
    is_chief = task_type == "chief" or ("chief" not in cluster and task_index == 0)
    return ClusterTask(workers=len(order), index=order.index((task_type, task_index)), is_chief=is_chief,
                       task_type=task_type)


@dataclasses.dataclass(frozen=True)
class Placement:
    """The resolved strategy of one training process, and what the reports record of it."""

    mode: str  # "none" | "mirrored" | "multi-worker"
    strategy: Any  # a tf.distribute.Strategy, or None on the single-device path
    replicas: int  # replicas in sync over the whole job (workers x local devices)
    workers: int
    worker_index: int
    is_chief: bool
    devices: tuple[str, ...] = ()

    def scope(self) -> contextlib.AbstractContextManager:
        """The strategy's scope (variables are created mirrored inside it); a no-op on one device."""
        return self.strategy.scope() if self.strategy is not None else contextlib.nullcontext()

    def per_replica_batch(self, global_batch: int) -> int:
        if global_batch % self.replicas:
            raise DistributeError(f"--batch-size {global_batch} is the global batch and must divide evenly over "
                                  f"{self.replicas} replicas")
        return global_batch // self.replicas

    def describe(self, global_batch: int) -> dict:
        """What metrics.json and config.json record."""
        return {"strategy": self.mode, "replicas": self.replicas, "workers": self.workers,
                "worker_index": self.worker_index, "global_batch_size": global_batch,
                "per_replica_batch_size": global_batch // self.replicas, "devices": list(self.devices)}


def configure_logical_cpus(environ: Mapping[str, str] = os.environ) -> int | None:
    """Splits the CPU into ``CTRFLOW_LOGICAL_CPUS`` logical devices; must run before TensorFlow initialises."""
    text = environ.get(LOGICAL_CPUS_ENV, "").strip()
    if not text:
        return None
    if not text.isdigit() or int(text) < 1:
        raise DistributeError(f"{LOGICAL_CPUS_ENV}={text!r}: give a number of logical CPU devices >= 1")
    import tensorflow as tf

    cpu = tf.config.list_physical_devices("CPU")[0]
    try:
        tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * int(text))
    except RuntimeError as e:  # TensorFlow already initialised: the split can no longer happen
        raise DistributeError(f"{LOGICAL_CPUS_ENV} must be set before TensorFlow starts ({e})") from None
    return int(text)


ONE_DEVICE = Placement("none", None, 1, 1, 0, True)  # today's single-device path: what run_fn defaults to


def _local_devices() -> list[str]:
    """GPUs if there are any, else the logical CPU devices: what MirroredStrategy mirrors over."""
    import tensorflow as tf

    gpus = tf.config.list_logical_devices("GPU")
    return [d.name for d in (gpus or tf.config.list_logical_devices("CPU"))]


def resolve_placement(mode: str = "auto", environ: Mapping[str, str] = os.environ) -> Placement:
    """The strategy for ``--distribute MODE``: TF_CONFIG first, then local devices, else none.

    Must run before TensorFlow builds any op (MultiWorkerMirroredStrategy
    configures the collective runtime at creation).
    """
    if mode not in MODES:
        raise DistributeError(f"--distribute {mode!r}: choose one of {', '.join(MODES)}")
    cluster = read_cluster(environ)
    configure_logical_cpus(environ)
    if mode == "none":
        if cluster is not None:
            logging.warning("--distribute none: ignoring TF_CONFIG's %d workers; this process trains alone",
                            cluster.workers)
        return Placement("none", None, 1, 1, 0, True)
    if mode == "multi-worker" or (mode == "auto" and cluster is not None):
        if cluster is None:
            raise DistributeError("--distribute multi-worker needs TF_CONFIG naming at least two tasks")
        import tensorflow as tf

        strategy = tf.distribute.MultiWorkerMirroredStrategy()
        return Placement("multi-worker", strategy, int(strategy.num_replicas_in_sync), cluster.workers,
                         cluster.index, cluster.is_chief, tuple(_local_devices()))
    devices = _local_devices()
    if mode == "mirrored" or (mode == "auto" and len(devices) > 1):  # >1 GPU, or CTRFLOW_LOGICAL_CPUS
        if len(devices) < 2:
            raise DistributeError(f"--distribute mirrored needs at least two local devices; this machine has "
                                  f"{devices}")
        import tensorflow as tf

        # on logical CPUs, NCCL does not apply: the local all-reduce is a plain reduce-and-broadcast
        cross = None if "GPU" in devices[0] else tf.distribute.ReductionToOneDevice()
        strategy = tf.distribute.MirroredStrategy(devices, cross_device_ops=cross)
        return Placement("mirrored", strategy, int(strategy.num_replicas_in_sync), 1, 0, True, tuple(devices))
    return Placement("none", None, 1, 1, 0, True, tuple(devices[:1]))


def prepare_model(model, placement: Placement) -> None:
    """Readies a built, compiled model for ``fit`` under ``placement``'s strategy; nothing on one device.

    Keras 3.15's ``fit`` under a strategy first builds the model on one batch
    it never trains on, and under MultiWorkerMirroredStrategy that build fails
    (``common.compat.keras.skip_symbolic_build``). With public APIs only,
    multi-worker training is refused in one line and mirrored training goes
    on without its first batch, with a warning.
    """
    if placement.strategy is None:
        return
    from ctrflow.common.compat import keras as keras_compat

    if keras_compat.skip_symbolic_build(model):
        return
    if placement.mode == "multi-worker":
        raise DistributeError("--distribute multi-worker needs the keras.skip_symbolic_build compat path "
                              "(Keras' own build under MultiWorkerMirroredStrategy fails), which "
                              "CTRFLOW_PUBLIC_API_ONLY=1 turns off; train with --distribute none or mirrored")
    logging.warning("%s training with public APIs only: Keras builds the model on the first batch, which is then "
                    "not trained on", placement.mode)


def distributed_dataset(placement: Placement, dataset, *, global_batch: int, num_files: int):
    """The training dataset of global batches, cut for this worker's replicas (the dataset itself on one device).

    ``strategy.experimental_distribute_dataset``: each global batch is split
    over the replicas (``global / N`` rows each), so 1 and N replicas see the
    same global batches in the same order. With several workers, by record
    (``AutoShardPolicy.DATA``): every worker reads and parses every file and
    keeps its replicas' part of each global batch.

    Not by file, although each worker would then read only its files: in
    TensorFlow 2.21 ``AutoShardPolicy.FILE`` under the multi-worker batch
    splitting gave one worker every row and the other none (measured on
    6,000 census rows in 6 files over 2 workers), and
    ``distribute_datasets_from_function`` makes Keras 3.15 run one extra,
    empty step per epoch (which moved Adam's weights). The input pipeline
    therefore does not scale out with the workers; the model's arithmetic does.
    """
    if placement.strategy is None:
        return dataset
    if placement.workers > 1:
        import tensorflow as tf

        options = tf.data.Options()
        options.experimental_distribute.auto_shard_policy = tf.data.experimental.AutoShardPolicy.DATA
        dataset = dataset.with_options(options)
        logging.info("training data sharded by record over %d workers (%d file(s)): each worker parses every "
                     "file and keeps its replicas' part of each global batch of %d", placement.workers, num_files,
                     global_batch)
    return placement.strategy.experimental_distribute_dataset(dataset)


@contextlib.contextmanager
def worker_output(output: str, placement: Placement) -> Iterator[str]:
    """The folder this worker writes checkpoints and logs to: ``output`` on the chief, a removed temp elsewhere.

    Keras's multi-worker guide: every worker must save (saving runs
    collectives), but only the chief's files are kept. The folder is removed
    when the job succeeds, and kept when it fails: it holds this worker's
    resume backup, which a restart with the same TF_CONFIG restores.
    """
    if placement.is_chief:
        yield output
        return
    import tensorflow as tf

    temp = os.path.join(output.rstrip("/"), f".worker-{placement.worker_index}-tmp")
    yield temp
    if tf.io.gfile.exists(temp):
        tf.io.gfile.rmtree(temp)
