"""``model.distribute``: TF_CONFIG parsing, strategy choice and file sharding, without starting a cluster."""
import json

import pytest

from ctrflow.model import distribute as dist


def _tf_config(cluster: dict, task_type: str, index: int) -> dict:
    return {"TF_CONFIG": json.dumps({"cluster": cluster, "task": {"type": task_type, "index": index}})}


TWO_WORKERS = {"worker": ["127.0.0.1:1", "127.0.0.1:2"]}
CHIEF_AND_WORKER = {"chief": ["127.0.0.1:1"], "worker": ["127.0.0.1:2", "127.0.0.1:3"]}


def test_no_or_single_task_tf_config_is_no_cluster():
    assert dist.read_cluster({}) is None
    assert dist.read_cluster(_tf_config({"worker": ["127.0.0.1:1"]}, "worker", 0)) is None


@pytest.mark.parametrize("cluster,task,index,expected", [
    (TWO_WORKERS, "worker", 0, dist.ClusterTask(2, 0, True, "worker")),
    (TWO_WORKERS, "worker", 1, dist.ClusterTask(2, 1, False, "worker")),
    (CHIEF_AND_WORKER, "chief", 0, dist.ClusterTask(3, 0, True, "chief")),
    (CHIEF_AND_WORKER, "worker", 0, dist.ClusterTask(3, 1, False, "worker")),
    (CHIEF_AND_WORKER, "worker", 1, dist.ClusterTask(3, 2, False, "worker")),
])
def test_the_chief_is_the_chief_task_else_worker_zero(cluster, task, index, expected):
    assert dist.read_cluster(_tf_config(cluster, task, index)) == expected


@pytest.mark.parametrize("env,message", [
    ({"TF_CONFIG": "{not json"}, "TF_CONFIG is not JSON"),
    (_tf_config({**TWO_WORKERS, "ps": ["127.0.0.1:9"]}, "worker", 0), "task types ['ps']"),
    (_tf_config(TWO_WORKERS, "worker", 5), "is not in its cluster"),
])
def test_a_tf_config_ctrflow_cannot_honour_is_one_clear_error(env, message):
    with pytest.raises(dist.DistributeError, match=message.replace("[", r"\[").replace("]", r"\]")):
        dist.read_cluster(env)


def test_modes_are_checked_and_none_ignores_tf_config():
    with pytest.raises(dist.DistributeError, match="choose one of auto, none, mirrored, multi-worker"):
        dist.resolve_placement("ring")
    placement = dist.resolve_placement("none", _tf_config(TWO_WORKERS, "worker", 1))
    assert (placement.mode, placement.strategy, placement.replicas, placement.is_chief) == ("none", None, 1, True)
    with pytest.raises(dist.DistributeError, match="needs TF_CONFIG"):
        dist.resolve_placement("multi-worker", {})


def test_global_batch_divides_over_replicas():
    placement = dist.Placement("mirrored", None, 2, 1, 0, True, ("cpu:0", "cpu:1"))
    assert placement.per_replica_batch(256) == 128
    assert placement.describe(256) == {"strategy": "mirrored", "replicas": 2, "workers": 1, "worker_index": 0,
                                       "global_batch_size": 256, "per_replica_batch_size": 128,
                                       "devices": ["cpu:0", "cpu:1"]}
    with pytest.raises(dist.DistributeError, match="divide evenly over 2 replicas"):
        placement.per_replica_batch(255)


def test_non_chief_workers_write_to_a_temporary_folder_that_is_removed(tmp_path):
    chief = dist.Placement("multi-worker", None, 2, 2, 0, True)
    other = dist.Placement("multi-worker", None, 2, 2, 1, False)
    with dist.worker_output(str(tmp_path), chief) as out:
        assert out == str(tmp_path)
    with dist.worker_output(str(tmp_path), other) as out:
        assert out != str(tmp_path)
        (tmp_path / ".worker-1-tmp").mkdir()
        (tmp_path / ".worker-1-tmp" / "ckpt").write_text("x")
    assert sorted(p.name for p in tmp_path.iterdir()) == []


def _built_model():
    import sys
    from pathlib import Path

    sys.path.insert(0, str(Path(__file__).parent))
    from test_models import LAYOUT, SMALL

    from ctrflow.model.config import ModelConfig
    from ctrflow.model.models import build_model, compile_model

    config = ModelConfig(**SMALL)
    return compile_model(build_model(LAYOUT, config), config)


def test_multi_worker_training_skips_keras_symbolic_build_and_public_apis_only_refuse_it(monkeypatch):
    multi_worker = dist.Placement("multi-worker", object(), 2, 2, 0, True)
    model = _built_model()
    dist.prepare_model(model, multi_worker)
    assert model._maybe_symbolic_build() is None  # the compat path: nothing to build
    monkeypatch.setenv("CTRFLOW_PUBLIC_API_ONLY", "1")
    with pytest.raises(dist.DistributeError, match="--distribute multi-worker needs the keras.skip_symbolic_build"):
        dist.prepare_model(_built_model(), multi_worker)
    dist.prepare_model(_built_model(), dist.Placement("mirrored", object(), 2, 1, 0, True))  # warns, goes on
