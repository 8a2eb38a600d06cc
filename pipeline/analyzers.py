"""One fused tf.Transform analyzer for every vocabulary of a schema.

``tft.compute_and_apply_vocabulary`` per column builds its own chain of Beam
stages and sends every token through Python as a Beam element; on a wide
table (Criteo: 26 categoricals) that per-column, per-token overhead is most of
the preprocess time. ``fused_vocabularies`` instead:

- reduces each batch in the graph (``tf.unique_with_counts`` per column), so
  only the distinct tokens of a batch leave TensorFlow;
- counts all columns in ONE Beam combine whose accumulator holds Arrow
  (token, count) tables, compacted with Arrow's hash group-by, so memory grows
  with the vocabulary sizes, never with the row count;
- applies each column's frequency_threshold / top_k, orders by count
  descending then token descending (exactly TFT's order), and writes one text
  vocabulary file per column, which TFT embeds as an asset of the transform
  graph (so ``TFTransformOutput.vocabulary_by_name`` works as usual).

Optionally it also writes a *global* vocabulary, the DeepFM single id space:
line ``i`` names global id ``i`` as a field-prefixed token (``C3=68fd1e64``).
"""
from __future__ import annotations

import dataclasses
import os
from typing import Sequence

import apache_beam as beam
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import tensorflow as tf
import tensorflow_transform as tft
import tensorflow_transform.beam as tft_beam
from apache_beam.io.filesystems import FileSystems

from ctrflow.common.compat.tft import EMPTY_VOCABULARY_TOKEN  # what TFT writes for a vocabulary that ends up empty
from ctrflow.pipeline import vocab_extend

_COMPACT_ROWS = 1 << 18  # pending (token, count) rows per column that trigger an Arrow group-by


@dataclasses.dataclass(frozen=True)
class VocabSpec:
    """One column's vocabulary request: the asset name and the pruning rules."""

    name: str
    top_k: int | None = None
    frequency_threshold: int = 1
    base_file: str | None = None  # extend this vocabulary append-only (pipeline.vocab_extend)
    prior_counts: tuple[str, ...] = ()  # cached (token, count) Arrow files of days not read this run


@dataclasses.dataclass(frozen=True)
class GlobalField:
    """One field of the global id space, for naming its lines in the global vocabulary.

    ``vocab`` is the index of the field's VocabSpec (its tokens come first),
    ``extra`` names the ids after them (OOV buckets, bucket ids, hash buckets).
    """

    name: str
    vocab: int | None = None
    extra: tuple[str, ...] = ()


def _compact(tokens: list[pa.Array], counts: list[np.ndarray]) -> tuple[list[pa.Array], list[np.ndarray]]:
    """Sums counts per distinct token (one Arrow hash group-by)."""
    if len(tokens) <= 1:
        return tokens, counts
    table = pa.table({"t": pa.concat_arrays(tokens), "c": np.concatenate(counts)})
    summed = table.group_by("t").aggregate([("c", "sum")])
    return [summed.column("t").combine_chunks()], [summed.column("c_sum").to_numpy()]


def batch_to_arrow(batch: Sequence[np.ndarray]) -> list[tuple[pa.Array, np.ndarray]]:
    """One batch's ``[uniques_0, counts_0, uniques_1, ...]`` -> (binary Arrow array, int64 counts) per column.

    Done in the stage that computed the batch, before the combine: the runner
    pickles what enters ``CombineGlobally``, and an Arrow array pickles as its
    buffers where a numpy object array of tokens pickles one bytes object each.
    """
    return [(pa.array(batch[2 * i], pa.binary()), np.asarray(batch[2 * i + 1], np.int64))
            for i in range(len(batch) // 2)]


class _CountTokens(beam.CombineFn):
    """Per-column token counts; the accumulator is ``[(token arrays, count arrays, rows)]``.

    A column is compacted once its rows exceed twice its last compacted size
    (and ``_COMPACT_ROWS``), so it holds at most ~3x its distinct tokens.
    """

    def __init__(self, num_columns: int):
        self.num_columns = num_columns

    def create_accumulator(self):
        return [([], [], 0) for _ in range(self.num_columns)]

    def _add(self, acc, i, tokens, counts, rows):
        t, c, n = acc[i]
        t, c, n = t + tokens, c + counts, n + rows
        if n > _COMPACT_ROWS and len(t) > 1 and n > 2 * len(t[0]):
            t, c = _compact(t, c)
            n = len(t[0])
        acc[i] = (t, c, n)

    def add_input(self, acc, batch: Sequence[tuple[pa.Array, np.ndarray]]):
        for i, (uniques, counts) in enumerate(batch):
            self._add(acc, i, [uniques], [counts], len(uniques))
        return acc

    def merge_accumulators(self, accumulators):
        accumulators = iter(accumulators)
        out = next(accumulators)
        for acc in accumulators:
            for i, (t, c, n) in enumerate(acc):
                self._add(out, i, t, c, n)
        return out

    def extract_output(self, acc) -> list[pa.Table]:
        out = []
        for t, c, _ in acc:
            t, c = _compact(t, c)
            out.append(pa.table({"t": t[0] if t else pa.array([], pa.binary()),
                                 "c": c[0] if c else np.zeros(0, np.int64)}))
        return out


def with_prior_counts(table: pa.Table, prior_files: Sequence[str]) -> pa.Table:
    """This run's counts plus cached per-day counts (Arrow IPC files of (t, c)), summed per token."""
    if not prior_files:
        return table
    tables = [table]
    for path in prior_files:
        with FileSystems.open(path) as f:
            tables.append(pa.ipc.open_file(pa.BufferReader(f.read())).read_all())
    merged = pa.concat_tables([t.select(["t", "c"]).cast(table.schema) for t in tables])
    summed = merged.group_by("t").aggregate([("c", "sum")])
    return pa.table({"t": summed.column("t").combine_chunks(), "c": summed.column("c_sum").combine_chunks()})


def order_vocabulary(counts: pa.Table, spec: VocabSpec) -> list[bytes]:
    """Applies frequency_threshold and top_k; count descending, ties by token descending (as TFT)."""
    kept = counts.filter(pc.greater_equal(counts.column("c"), spec.frequency_threshold))
    order = pc.sort_indices(kept, sort_keys=[("c", "descending"), ("t", "descending")])
    if spec.top_k is not None:
        order = order[: spec.top_k]
    return kept.column("t").take(order).to_pylist()


def _write_lines(path: str, lines: list[bytes]) -> None:
    for line in lines:
        if b"\n" in line or b"\r" in line:
            raise ValueError(f"vocabulary {os.path.basename(path)}: token {line[:40]!r} contains a line break")
    with FileSystems.create(path) as f:
        f.write(b"".join(line + b"\n" for line in lines))


class _WriteVocabularies(beam.DoFn):
    def __init__(self, specs: tuple[VocabSpec, ...], global_fields: tuple[GlobalField, ...],
                 global_name: str | None, directory: str, base_global_file: str | None = None):
        self.specs, self.global_fields = specs, global_fields
        self.global_name, self.directory = global_name, directory
        self.base_global_file = base_global_file

    def process(self, counts: list[pa.Table]):
        paths, vocabs, new = [], [], []
        for spec, table in zip(self.specs, counts):
            table = with_prior_counts(table, spec.prior_counts)
            if spec.base_file is not None:
                tokens, growth = vocab_extend.extend(vocab_extend.read_vocabulary(spec.base_file), table,
                                                     spec.frequency_threshold, spec.top_k)
                new.append(tokens[growth.base:])
            else:
                tokens = order_vocabulary(table, spec) or [EMPTY_VOCABULARY_TOKEN]
            vocabs.append(tokens)
            paths.append(os.path.join(self.directory, spec.name))
            _write_lines(paths[-1], tokens)
        if self.global_name is not None and self.base_global_file is not None:
            names = [f.name for f in self.global_fields if f.vocab is not None]
            lines = vocab_extend.extend_global(vocab_extend.read_vocabulary(self.base_global_file), names,
                                               [new[f.vocab] for f in self.global_fields if f.vocab is not None])
            paths.append(os.path.join(self.directory, self.global_name))
            _write_lines(paths[-1], lines)
        elif self.global_name is not None:
            lines = []
            for field in self.global_fields:
                prefix = field.name.encode() + b"="
                if field.vocab is not None:
                    lines += [prefix + t for t in vocabs[field.vocab]]
                lines += [prefix + e.encode() for e in field.extra]
            paths.append(os.path.join(self.directory, self.global_name))
            _write_lines(paths[-1], lines)
        yield [np.array(p) for p in paths]


class FusedVocabularies(tft_beam.experimental.PTransformAnalyzer):
    """Batches of (uniques, counts) per column -> vocabulary file paths."""

    def __init__(self, specs: tuple[VocabSpec, ...], global_fields: tuple[GlobalField, ...] = (),
                 global_name: str | None = None, base_global_file: str | None = None):
        super().__init__()
        self.specs, self.global_fields, self.global_name = specs, global_fields, global_name
        self.base_global_file = base_global_file

    def expand(self, pcoll):
        n_out = len(self.specs) + int(self.global_name is not None)
        results = (pcoll
                   | "ToArrow" >> beam.Map(batch_to_arrow)
                   | "Count" >> beam.CombineGlobally(_CountTokens(len(self.specs)))
                   | "Write" >> beam.ParDo(_WriteVocabularies(self.specs, self.global_fields, self.global_name,
                                                              self.base_temp_dir, self.base_global_file)))
        return tuple(results | f"Output{i}" >> beam.Map(lambda r, i=i: r[i]) for i in range(n_out))


def fused_vocabularies(tokens: Sequence[tf.Tensor], specs: Sequence[VocabSpec],
                       global_fields: Sequence[GlobalField] = (), global_name: str | None = None,
                       base_global_file: str | None = None) -> tuple[list[tf.Tensor], tf.Tensor | None]:
    """Analyzes all vocabularies in one pass.

    ``tokens[i]``: a 1-D string tensor of column i's tokens in the batch.
    Returns (vocabulary file per spec, global vocabulary file or None); pass
    a file to ``tft.apply_vocabulary``.
    """
    inputs = []
    for t in tokens:
        uniques, _, counts = tf.unique_with_counts(tf.reshape(t, [-1]), out_idx=tf.int64)
        inputs += [uniques, counts]
    n_files = len(specs) + int(global_name is not None)
    outputs = tft.experimental.ptransform_analyzer(
        inputs, FusedVocabularies(tuple(specs), tuple(global_fields), global_name, base_global_file),
        output_dtypes=[tf.string] * n_files, output_shapes=[[]] * n_files,
        output_asset_default_values=[EMPTY_VOCABULARY_TOKEN] * n_files, name="fused_vocabularies")
    return list(outputs[: len(specs)]), (outputs[-1] if global_name is not None else None)
