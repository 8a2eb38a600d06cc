"""``ctrflow train`` on 1 process, 2 workers (TF_CONFIG on 127.0.0.1) and 2 mirrored logical CPUs: examples/s,
eval AUC, and the all-reduce volume of one step. Prints a markdown table (and the JSON rows).

Every configuration trains the same command on the same preprocessed census data (adult.data / adult.test),
one run each, one after the other. The all-reduce volume is what one replica contributes per step: every dense
gradient (the weights that are not embedding rows), plus the embedding rows its batch touched (values + int64
row ids: ``tf.IndexedSlices``), measured on the first training batches of one replica's size.

    python benchmarks/distribute.py [--data PREPROCESSED] [--epochs 3] [--batch-size 512] [--no-write]

Writes the "distribute" section of BENCHMARKS.md.
"""
from __future__ import annotations

import argparse
import json
import os
import socket
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PYTHON = sys.executable
CENSUS = os.path.join(ROOT, "data", "census")
SECTION = "distribute"
sys.path.insert(0, ROOT)

from benchmarks.report import machine_line, markdown_table, section_head, update_section  # noqa: E402

LIMITS = """What limits scaling here: both replicas share the machine's 2 cores, so two replicas never have more
arithmetic than one process; every worker parses the whole training split (sharding is by record, see README
"Training on several machines"); and the all-reduce goes through gRPC on loopback. On machines of their own,
the model's arithmetic scales with the replicas while the input pipeline does not. Not checked here: GPUs (none
on this machine; MirroredStrategy over GPUs takes the same path as over logical CPUs), and the 1M-row
generated Criteo table the issue asks for."""


def free_ports(n: int) -> list[int]:
    """``n`` free TCP ports on 127.0.0.1 (for TF_CONFIG's cluster)."""
    sockets = [socket.socket() for _ in range(n)]
    for s in sockets:
        s.bind(("127.0.0.1", 0))
    ports = [s.getsockname()[1] for s in sockets]
    for s in sockets:
        s.close()
    return ports


def training_env(**extra: str) -> dict[str, str]:
    """This process's environment without TF_CONFIG and the logical-CPU split, plus ``extra``."""
    env = {k: v for k, v in os.environ.items() if k not in ("TF_CONFIG", "CTRFLOW_LOGICAL_CPUS")}
    return {**env, "TF_CPP_MIN_LOG_LEVEL": "2", "CUDA_VISIBLE_DEVICES": "", **extra}


def preprocess(work: str) -> str:
    data = os.path.join(work, "data")
    subprocess.run([PYTHON, "-m", "ctrflow.cli", "preprocess", "--schema", os.path.join(ROOT, "schemas", "census.yaml"),
                    "--train", os.path.join(CENSUS, "adult.data"), "--eval", os.path.join(CENSUS, "adult.test"),
                    "--output", data, "--num-shards", "2"], check=True, env=training_env())
    return data


def train(name: str, data: str, work: str, flags: list[str]) -> dict:
    """One configuration; its chief's metrics.json plus the wall time."""
    output = os.path.join(work, name)
    cmd = [PYTHON, "-m", "ctrflow.cli", "train", "--data", data, "--output", output, "--verbose", "0", *flags]
    start = time.time()
    if name == "2 workers":
        cluster = {"worker": [f"127.0.0.1:{p}" for p in free_ports(2)]}
        procs = [subprocess.Popen(cmd, env=training_env(TF_CONFIG=json.dumps({"cluster": cluster,
                                                                       "task": {"type": "worker", "index": i}})))
                 for i in range(2)]
        codes = [p.wait() for p in procs]
        if codes != [0, 0]:
            raise SystemExit(f"{name}: exit codes {codes}")
    else:
        env = training_env(CTRFLOW_LOGICAL_CPUS="2") if name == "2 mirrored devices" else training_env()
        subprocess.run(cmd, check=True, env=env)
    with open(os.path.join(output, "metrics.json")) as f:
        metrics = json.load(f)
    return {"configuration": name, "replicas": metrics["distribute"]["replicas"],
            "examples_per_second": metrics["train_examples_per_second"], "eval_auc": round(metrics["auc"], 4),
            "wall_seconds": round(time.time() - start, 1)}


def allreduce_volume(data: str, per_replica_batch: int, batches: int = 20) -> dict:
    """Bytes one replica all-reduces per step: dense gradients + touched embedding rows (mean over ``batches``)."""
    import tensorflow as tf
    import tensorflow_transform as tft

    from ctrflow.model.config import ModelConfig
    from ctrflow.model.inputs import make_dataset, split_files
    from ctrflow.model.models import build_model
    from ctrflow.pipeline.artifacts import live_dir
    from ctrflow.pipeline.layout import FeatureLayout

    live = live_dir(data)
    with tf.io.gfile.GFile(os.path.join(live, "layout.json")) as f:
        layout = FeatureLayout.from_json(f.read())
    model = build_model(layout, ModelConfig(model="deepfm"))
    spec = tft.TFTransformOutput(live).transformed_feature_spec()
    ds = make_dataset(split_files(live, "train"), spec, layout, per_replica_batch, shuffle=True, seed=1)
    dense_bytes, row_bytes, rows = 0, [], []
    for k, (x, y) in enumerate(ds.take(batches)):
        with tf.GradientTape() as tape:
            loss = tf.reduce_mean(tf.nn.sigmoid_cross_entropy_with_logits(tf.reshape(tf.cast(y, tf.float32),
                                                                                     (-1, 1)), model(x)))
        step_rows = step_row_bytes = step_dense = 0
        for g in tape.gradient(loss, model.trainable_variables):
            if isinstance(g, tf.IndexedSlices):
                unique = int(tf.size(tf.unique(g.indices)[0]))
                width = int(tf.reduce_prod(g.values.shape[1:]))
                step_rows += unique
                step_row_bytes += unique * (width * 4 + 8)
            elif g is not None:
                step_dense += int(tf.size(g)) * 4
        dense_bytes = step_dense if k == 0 else dense_bytes
        rows.append(step_rows)
        row_bytes.append(step_row_bytes)
    table_rows = sum(int(v.shape[0]) for v in model.trainable_variables if "embedding" in v.path or "id_weights" in
                     v.path)
    return {"per_replica_batch": per_replica_batch, "dense_gradient_bytes": dense_bytes,
            "embedding_rows_touched": round(sum(rows) / len(rows)), "embedding_table_rows": table_rows,
            "embedding_row_bytes": round(sum(row_bytes) / len(row_bytes))}


def write_section(rows: list[dict], volume: dict, args: argparse.Namespace) -> None:
    if args.no_write:
        return
    total = volume["dense_gradient_bytes"] + volume["embedding_row_bytes"]
    table = markdown_table(["configuration", "replicas", "train examples/s", "eval AUC (adult.test)", "wall s"],
                           [[r["configuration"], r["replicas"], f"{r['examples_per_second']:,.0f}",
                             f"{r['eval_auc']:.4f}", r["wall_seconds"]] for r in rows])
    body = "\n\n".join([
        section_head("Training on tf.distribute (`benchmarks/distribute.py`)",
                     "examples/s and eval AUC of `ctrflow train` (DeepFM, census) on 1 process, 2 workers "
                     "(TF_CONFIG on 127.0.0.1) and MirroredStrategy over 2 logical CPUs; the all-reduce volume "
                     "of one step", f"{machine_line()}, one run of each, one after the other"),
        table,
        f"All-reduce per step and replica (batch {volume['per_replica_batch']}): dense gradients "
        f"{volume['dense_gradient_bytes'] / 1e3:,.1f} kB + {volume['embedding_rows_touched']:,} of "
        f"{volume['embedding_table_rows']:,} embedding rows touched ({volume['embedding_row_bytes'] / 1e3:,.1f} kB)"
        f" = {total / 1e3:,.1f} kB.",
        LIMITS])
    update_section(SECTION, body)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", help="a census preprocess output (default: preprocess data/census into a temp folder)")
    ap.add_argument("--epochs", type=int, default=3)
    ap.add_argument("--batch-size", type=int, default=512)
    ap.add_argument("--no-write", action="store_true", help="print only; leave BENCHMARKS.md alone")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory(prefix="ctrflow-distribute-") as work:
        data = args.data or preprocess(work)
        flags = ["--epochs", str(args.epochs), "--patience", str(args.epochs), "--ensemble", "1", "--batch-size",
                 str(args.batch_size), "--model", "deepfm", "--seed", "7"]
        rows = [train(name, data, work, flags) for name in ("1 process", "2 workers", "2 mirrored devices")]
        volume = allreduce_volume(data, args.batch_size // 2)
    write_section(rows, volume, args)
    print("| configuration | replicas | train examples/s | eval AUC | wall s |")
    print("|---|---:|---:|---:|---:|")
    for r in rows:
        print(f"| {r['configuration']} | {r['replicas']} | {r['examples_per_second']:,.0f} | {r['eval_auc']:.4f} | "
              f"{r['wall_seconds']} |")
    total = volume["dense_gradient_bytes"] + volume["embedding_row_bytes"]
    print(f"\nall-reduce per step and replica (batch {volume['per_replica_batch']}): dense gradients "
          f"{volume['dense_gradient_bytes'] / 1e3:,.1f} kB + {volume['embedding_rows_touched']:,} embedding rows "
          f"touched of {volume['embedding_table_rows']:,} ({volume['embedding_row_bytes'] / 1e3:,.1f} kB) = "
          f"{total / 1e3:,.1f} kB")
    print(json.dumps({"runs": rows, "allreduce": volume}))


if __name__ == "__main__":
    main()
