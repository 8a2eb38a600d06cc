"""The hardware floors the jobs are compared against, each measured in one process.

- **scoring floor**: the per-row work a scorer cannot avoid on this machine:
  parsing the file with Arrow's multithreaded CSV reader (numeric columns
  typed float32, categorical columns strings) plus the model's
  ``score_and_ids`` calls on 8192-row batches whose tensors are ready
  (TensorFlow using every core; the job's model-call size, its fastest). No imports, model load, validation or output.
  Also timed, not part of the floor: the job's own model path on the same
  rows (``beam_jobs.scoring.distinct_values``: each column's distinct values
  transformed once per 65,536-row batch, the XLA-compiled model), which
  needs less than ``score_and_ids`` itself.
- **preprocessing floor**: one single-process Arrow/numpy pass that computes
  what the preprocess job learns and writes for the Criteo schema: per numeric
  column signed log1p and 20 quantile-bucket boundaries (exact quantiles),
  per categorical column the vocabulary with frequency >= 10 (count desc,
  token desc), then every row's bucket / vocabulary ids written as gzip
  (level 1) TFRecords of tf.Examples (tfx_bsl encoding, batch-wise framing).

Each prints one JSON line of seconds per part; ``benchmarks/score.py`` and
``benchmarks/preprocess.py`` run them in a subprocess in the same invocation as
the jobs they are compared with.

    python benchmarks/floors.py score FILE MODEL_DIR
    python benchmarks/floors.py preprocess FILE OUT_DIR
"""
from __future__ import annotations

import json
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

NUMERIC = [f"I{i}" for i in range(1, 14)]
CATEGORICAL = [f"C{i}" for i in range(1, 27)]
COLUMNS = ["label", *NUMERIC, *CATEGORICAL]
BATCH = 65_536  # preprocessing floor's batch


def read_criteo(path: str):
    """The whole file as one Arrow table (multithreaded reader, typed columns)."""
    import pyarrow as pa
    import pyarrow.csv as pacsv

    types = {"label": pa.float32(), **{c: pa.float32() for c in NUMERIC}, **{c: pa.string() for c in CATEGORICAL}}
    return pacsv.read_csv(
        path, read_options=pacsv.ReadOptions(column_names=COLUMNS, use_threads=True, block_size=8 << 20),
        parse_options=pacsv.ParseOptions(delimiter="\t", quote_char=False),
        convert_options=pacsv.ConvertOptions(column_types=types, strings_can_be_null=False))


def score_floor(path: str, model_dir: str) -> dict:
    """Seconds: Arrow parse, model calls on ready tensors; and the fixed costs of a process that does them."""
    t0 = time.perf_counter()
    import tensorflow as tf
    t_import = time.perf_counter() - t0

    from ctrflow.beam_jobs.scoring.arrow_tensors import INFERENCE_BATCH_ROWS, batch_to_tensors
    from ctrflow.model.artifact import load

    t0 = time.perf_counter()
    model = load(model_dir if model_dir.rstrip("/").endswith("export") else os.path.join(model_dir, "export"))
    fn = model.signature("score_and_ids")
    t_load = time.perf_counter() - t0
    t0 = time.perf_counter()
    table = read_criteo(path)
    t_parse = time.perf_counter() - t0
    specs = fn.structured_input_signature[1]
    table = table.combine_chunks()
    step = INFERENCE_BATCH_ROWS
    batches = [batch_to_tensors(table.slice(i, step).combine_chunks().to_batches()[0], specs)
               for i in range(0, table.num_rows, step)]
    fn(**batches[0])  # the first call of a signature pays one-off costs: measured in the job, not here
    t0, c0 = time.perf_counter(), time.process_time()
    rows = 0
    for x in batches:
        rows += len(fn(**x)["score"])
    t_infer, c_infer = time.perf_counter() - t0, time.process_time() - c0
    assert rows == table.num_rows, (rows, table.num_rows)
    t_unique, c_unique = _distinct_values_seconds(model, table)
    del tf
    return {"rows": rows, "parse_s": t_parse, "inference_s": t_infer, "floor_s": t_parse + t_infer,
            "import_tf_s": t_import, "model_load_s": t_load, "inference_cpu_s": c_infer,
            "unique_inference_s": t_unique, "unique_inference_cpu_s": c_unique}


def _distinct_values_seconds(model, table) -> tuple[float | None, float | None]:
    """(wall, CPU) seconds of the job's own model path (``beam_jobs.scoring.distinct_values``) on ready 65,536-row batches."""
    from ctrflow.beam_jobs.scoring.arrow_tensors import INFERENCE_BATCH_ROWS
    from ctrflow.beam_jobs.scoring.distinct_values import UniqueValueScorer

    scorer = UniqueValueScorer.create(model, INFERENCE_BATCH_ROWS)
    if scorer is None:
        return None, None
    batches = [table.slice(i, 65_536).combine_chunks() for i in range(0, table.num_rows, 65_536)]
    scorer(batches[0].slice(0, 1))  # compiles the model: a one-off cost, measured in the job
    t0, c0 = time.perf_counter(), time.process_time()
    rows = sum(len(scorer(b)["score"]) for b in batches)
    assert rows == table.num_rows, (rows, table.num_rows)
    return time.perf_counter() - t0, time.process_time() - c0


def _signed_log1p(values):
    import numpy as np

    return np.sign(values) * np.log1p(np.abs(values))


def preprocess_floor(path: str, out: str) -> dict:
    """Seconds of each part of a single-process Arrow/numpy preprocess of the Criteo file."""
    import numpy as np
    import pyarrow as pa
    import pyarrow.compute as pc

    from ctrflow.beam_jobs.outputs.tfrecord_writer import gzip_member
    from ctrflow.schemas import MISSING_TOKEN

    parts = {}
    t0 = time.perf_counter()
    table = read_criteo(path).combine_chunks()
    parts["parse_s"] = time.perf_counter() - t0

    t0 = time.perf_counter()
    boundaries, logged = {}, {}
    for c in NUMERIC:
        v = _signed_log1p(table.column(c).to_numpy(zero_copy_only=False).astype(np.float32))
        logged[c] = v
        present = v[~np.isnan(v)]
        boundaries[c] = np.unique(np.quantile(present, np.linspace(0, 1, 21)[1:-1])) if present.size else np.array([])
    parts["quantiles_s"] = time.perf_counter() - t0

    t0 = time.perf_counter()
    vocabs = {}
    for c in CATEGORICAL:
        counts = pc.value_counts(pc.if_else(pc.equal(table.column(c), ""), MISSING_TOKEN, table.column(c)))
        kept = pc.filter(counts, pc.greater_equal(counts.field("counts"), 10))
        pairs = sorted(zip(kept.field("counts").to_pylist(), kept.field("values").to_pylist()), reverse=True)
        vocabs[c] = pa.array([token for _, token in pairs], pa.string())  # count desc, token desc
    parts["vocabularies_s"] = time.perf_counter() - t0

    t0 = time.perf_counter()
    os.makedirs(out, exist_ok=True)
    label = table.column("label").to_numpy(zero_copy_only=False)
    written = 0
    with open(os.path.join(out, "train.tfrecord.gz"), "wb") as f:
        for start in range(0, table.num_rows, BATCH):
            stop = min(start + BATCH, table.num_rows)
            n = stop - start
            offsets = pa.array(np.arange(n + 1, dtype=np.int32))
            cols = [pa.ListArray.from_arrays(offsets, pa.array(label[start:stop].astype(np.float32)))]
            names = ["label"]
            for c in NUMERIC:
                v = logged[c][start:stop]
                ids = np.searchsorted(boundaries[c], np.nan_to_num(v, nan=0.0), side="right").astype(np.int64)
                cols.append(pa.ListArray.from_arrays(offsets, pa.array(ids)))
                names.append(c)
            for c in CATEGORICAL:
                col = table.column(c).slice(start, n).combine_chunks()
                ids = pc.fill_null(pc.index_in(col, value_set=vocabs[c]), len(vocabs[c])).cast(pa.int64())
                cols.append(pa.ListArray.from_arrays(offsets, ids))
                names.append(c)
            f.write(gzip_member(pa.RecordBatch.from_arrays(cols, names)))  # encoded as the job does
            written += n
    parts["transform_write_s"] = time.perf_counter() - t0
    assert written == table.num_rows
    return {"rows": written, **parts, "floor_s": sum(parts.values()),
            "vocabulary_sizes": {c: len(v) for c, v in vocabs.items()}}


def main(argv: list[str]) -> None:
    kind, path, where = argv
    result = score_floor(path, where) if kind == "score" else preprocess_floor(path, where)
    print(json.dumps(result))


if __name__ == "__main__":
    main(sys.argv[1:])
