"""The raw-value rules: what the text of a field means, decided once.

Each rule is applied where the data is (Arrow in the Beam jobs, TensorFlow
inside the exported graph), so it has several implementations; one golden
table, ``tests/raw_value_cases.py``, holds every implementation to the same
answers (``tests/test_raw_value_rules.py``):

- ``pipeline.parsing.BatchParser`` (Arrow): raw rows of the batch jobs -> clean values;
- ``pipeline.raw_values`` (TensorFlow): the same inside the exported text
  signatures, for a TF Serving client that sends the file's text;
- ``pipeline.transform.categorical_tokens`` (TensorFlow): a clean categorical value -> the
  tokens vocabularies, hashes and crosses see;
- ``beam_jobs.preprocess.analysis_cache.tokens`` (Arrow): the same tokens for
  the per-day analysis, which must count exactly what the transform then looks
  up (its numeric values come from ``transform.numeric_value`` itself).

The rules, in order:

1. **Strip** (``strips``: CSV with ``strip: true``; other formats keep the
   value as it is): ASCII whitespace around the value (``ASCII_WHITESPACE``)
   is removed, nothing else: not a no-break space, an ideographic space or a
   byte-order mark. That is UTF-8 safe and what Arrow's
   ``ascii_trim_whitespace`` and TensorFlow's ``strings.strip`` both do.
2. **Null markers**: after strip, a value equal to one of the schema's
   ``null_markers`` (the whole value, case-sensitive) is missing, and so is
   a null (Parquet, BigQuery) or a feature absent from a tf.Example. Missing
   is NaN in a numeric column and ``""`` in a categorical one.
3. **Numbers**: a present numeric value matches ``NUMBER_PATTERN`` whole: an
   optional sign, ASCII digits with an optional decimal point (``5.``,
   ``.5``) and exponent, or a spelling of inf / nan in any case. Not numbers:
   hexadecimal (``0x10``, ``0x1p3``: TensorFlow's parser alone would take
   them), digit separators (``1_000``, ``1,5``), non-ASCII digits
   (Arabic-Indic ``٣``, full-width ``５``), whitespace left inside or around
   the value. The value is the nearest float32 of the decimal text (rounded
   once, not through float64).
4. **Finite**: a present number must be finite in float32. ``inf``, ``-inf``,
   ``nan`` (unless it is a null marker) and values beyond float32's range
   (``4e38``, ``1e400``, a 40-digit integer) are rejected: the row in a batch
   job (its rejected-rows file says why), the request in serving
   (InvalidArgument naming the column); an infinity would otherwise reach the
   model through its scaled copy. Underflow is kept (``1e-50`` is 0, ``1e-45``
   the smallest subnormal) and ``-0`` is -0.0.
5. **Tokens**: a missing categorical value is the token ``MISSING_TOKEN``. A
   multivalent value is split on its delimiter, each part stripped of ASCII
   whitespace (whatever ``strip`` says) and empty parts dropped; a value with
   no part left is ``[MISSING_TOKEN]``.

Labels are not feature values: ``BatchParser`` compares a label with the
schema's positive and negative values after trimming any whitespace.

A sample weight (``role: weight``, batch jobs only: serving never reads it)
follows rules 1-4 as a numeric value does, and then must be present and
``>= 0``: a missing, unparsable, non-finite or negative weight rejects the
row with its reason. A weight of 0 (or ``-0``) is kept: the row is written
and counted, and weighs nothing in the loss, the metrics and calibration.
"""
from __future__ import annotations

from ctrflow.schemas.types import MISSING_TOKEN, InputFormat

ASCII_WHITESPACE = " \t\n\v\f\r"
"""What strip removes (Arrow's and TensorFlow's ASCII whitespace)."""

NUMBER_PATTERN = r"^[+-]?([0-9]+\.?[0-9]*|\.[0-9]+)([eE][+-]?[0-9]+)?$|^[+-]?(?i:inf|infinity|nan(\([0-9a-z_]*\))?)$"
"""A number's text (RE2, as Arrow and TensorFlow use it; ``[0-9]``, not ``\\d``, whatever the engine).

The inf and nan spellings are those Arrow's cast and TensorFlow's parser
accept (any case; C's ``nan(chars)``), so that such a value is "not finite"
whichever path parsed it, not "not a number" on one and "not finite" on the other.
"""

INT_PATTERN = r"^[+-]?[0-9]+$"
"""An int64 id column's text."""

__all__ = ["ASCII_WHITESPACE", "INT_PATTERN", "MISSING_TOKEN", "NUMBER_PATTERN", "strips"]


def strips(fmt: InputFormat) -> bool:
    """Whether values of this format are stripped (rule 1): CSV with ``strip: true``."""
    return fmt.strip and fmt.type == "csv"
