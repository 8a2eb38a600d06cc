"""tf.Transform values ctrflow must match but tf.Transform does not export.

``EMPTY_VOCABULARY_TOKEN``: the one line tf.Transform writes for a vocabulary
that ends up empty (so lookups still build); its only source is the internal
``tensorflow_transform.analyzers.get_empy_vocabulary_dummy_value``. ctrflow's
fused vocabulary analyzer writes the same line. A copy, not a call: no
private code runs, and tests/test_compat.py checks the copy against the
installed tf.Transform (setup.py pins its minor version).
"""
from __future__ import annotations

EMPTY_VOCABULARY_TOKEN = b"49d0cd50-04bb-48c0-bc6f-5b575dce351a"
