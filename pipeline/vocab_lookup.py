"""Vocabulary lookups with ONE table resource per vocabulary file (``tft.apply_vocabulary``'s ``lookup_fn``).

TFT's default lookup with OOV buckets is a ``StaticVocabularyTable``, which
wraps a ``StaticHashTable``: two resources per vocabulary, each saved with its
own creator, initializer and destroyer functions, and saved again as restored
functions once the transform graph is re-exported inside the serving model.
On the Criteo benchmark model (26 vocabularies) those functions were most of
the export's, and every one of them is rebuilt by ``tf.saved_model.load`` on
the scoring path: one table per vocabulary halves them.
The ids are the same by construction:
a token in the file gets its line number, any other
``vocab_size + to_hash_bucket_fast(token, num_oov_buckets)``, which is what
``StaticVocabularyTable.lookup`` computes. With one OOV bucket that bucket is
always 0, so the tokens are not fingerprinted at all, which saves a hash of
every token (the schemas' default is one OOV bucket).
"""
from __future__ import annotations

import contextlib
from typing import Callable

import tensorflow as tf

Lookup = Callable[[tf.Tensor, tf.Tensor], tuple[tf.Tensor, tf.Tensor]]


def _is_constant(vocabulary_file) -> bool:
    """A str or an eager tensor (a value, not a graph tensor): TFT's ``isinstance(f, (str, ops.EagerTensor))``."""
    if isinstance(vocabulary_file, str):
        return True
    return isinstance(vocabulary_file, tf.Tensor) and not tf.is_symbolic_tensor(vocabulary_file)


def vocabulary_table(vocabulary_file) -> tf.lookup.StaticHashTable:
    """token -> line number, -1 when absent; built once (lifted out of the traced function) as TFT does."""
    with contextlib.ExitStack() as stack:
        if tf.inside_function() and _is_constant(vocabulary_file):
            stack.enter_context(tf.init_scope())
        return tf.lookup.StaticHashTable(
            tf.lookup.TextFileInitializer(vocabulary_file, key_dtype=tf.string,
                                          key_index=tf.lookup.TextFileIndex.WHOLE_LINE, value_dtype=tf.int64,
                                          value_index=tf.lookup.TextFileIndex.LINE_NUMBER),
            default_value=-1)


def flat_tokens(x):
    """A column's tokens as one flat tensor (a ragged column's values), the shape a lookup or analyzer needs."""
    return x.flat_values if isinstance(x, tf.RaggedTensor) else x


def _like(x, values):
    return x.with_flat_values(values) if isinstance(x, tf.RaggedTensor) else values


def oov_buckets(tokens, num_oov_buckets: int):
    """Each token's OOV bucket, TFT's ``to_hash_bucket_fast(token, num_oov_buckets)``; one bucket: all 0, unhashed."""
    if num_oov_buckets == 1:
        return tf.zeros_like(tokens, tf.int64)
    return tf.strings.to_hash_bucket_fast(tokens, num_oov_buckets)


def vocabulary_lookup(num_oov_buckets: int, missing_token: str | None = None) -> Lookup:
    """A ``lookup_fn``: ids of a column's tokens (dense or ragged), unseen ones in ``num_oov_buckets`` buckets.

    With ``num_oov_buckets == 0`` an unseen token gets -1, as TFT's default.
    With ``missing_token``, an empty string is a missing value and gets the id
    of ``missing_token`` (the token the analyzers counted in its place): see
    ``missing_as``.
    """

    def ids(table, size, values):
        found = table.lookup(values)
        if num_oov_buckets > 0:
            found = tf.where(found >= 0, found, size + oov_buckets(values, num_oov_buckets))
        return found

    def lookup(x, vocabulary_file):
        table = vocabulary_table(vocabulary_file)
        size = table.size()
        values = flat_tokens(x)
        found = ids(table, size, values)
        if missing_token is not None:
            found = missing_as(values, found, lambda t: ids(table, size, t), missing_token)
        return _like(x, found), size + num_oov_buckets

    return lookup


def missing_as(values: tf.Tensor, found: tf.Tensor, ids_of: Callable[[tf.Tensor], tf.Tensor],
               missing_token: str) -> tf.Tensor:
    """``found`` (the ids of ``values``) with every empty value given ``missing_token``'s id.

    Exactly ``ids_of(where(values == "", missing_token, values))``, but the
    select runs over int64 ids instead of strings: a string select copies
    every token, and with 26 categorical columns it was the transform graph's
    costliest op in a ``tf.profiler`` trace of ``score_and_ids`` on the
    benchmark model. The ids and scores are the same bit for bit.
    """
    return tf.where(tf.equal(values, ""), ids_of(tf.constant(missing_token)), found)


def lookup_with_fallback(x, vocabulary_file):
    """A ``lookup_fn`` over ``x = stack([keys, fallback])``: each key's line, else its fallback's; one table."""
    table = vocabulary_table(vocabulary_file)
    found = table.lookup(x)
    return tf.where(found[0] >= 0, found[0], found[1]), table.size()
