"""Append-only vocabularies: extend a previous run's vocabulary instead of rebuilding it.

Why: a rebuilt vocabulary reorders ids every day (order is by count), so
yesterday's embedding rows no longer mean the same tokens. Extending keeps
every base token at its id and appends the new tokens that pass the column's
``frequency_threshold``, in the usual order (count descending, token
descending). ``top_k`` caps the total size: once a vocabulary holds ``top_k``
tokens it stops growing (base tokens are never dropped, even when the base is
larger than top_k).

The global DeepFM id space (``vocab__global``) is extended the same way: the
base lines keep their ids and each field's new tokens are appended at the end
as ``FIELD=token`` (OOV, hash and bucket ids already exist in the base).
"""
from __future__ import annotations

import dataclasses
import os

import pyarrow as pa
import pyarrow.compute as pc
from apache_beam.io.filesystems import FileSystems

from ctrflow.common.errors import UserError
from ctrflow.pipeline import artifacts as af


@dataclasses.dataclass(frozen=True)
class Growth:
    """How one vocabulary changed against its base."""

    base: int
    gained: int
    capped: bool = False  # new tokens were left out because top_k was reached

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


def read_vocabulary(path: str) -> list[bytes]:
    """A vocabulary text file -> its tokens, id = line number."""
    with FileSystems.open(path) as f:
        data = f.read()
    return data.split(b"\n")[:-1] if data.endswith(b"\n") else data.split(b"\n")


def base_vocabulary_path(base: str, name: str) -> str:
    """Where a preprocess output (or a model export) keeps vocabulary ``name``."""
    for candidate in (os.path.join(base, af.TRANSFORM_ASSETS, name),
                      os.path.join(base, af.EXPORT, af.SAVED_MODEL_ASSETS, name),
                      os.path.join(base, af.SAVED_MODEL_ASSETS, name)):
        if FileSystems.exists(candidate):
            return candidate
    raise UserError(f"--base {base}: no vocabulary {name} in {os.path.join(base, af.TRANSFORM_ASSETS)}; "
                            "is it a `ctrflow preprocess` output of the same schema?")


def extend(base: list[bytes], counts: pa.Table, frequency_threshold: int, top_k: int | None,
           placeholder: bytes | None = None) -> tuple[list[bytes], Growth]:
    """Base tokens first (same ids), then new tokens passing the threshold, count desc then token desc.

    ``counts`` is a (t: binary, c: int64) table of this run's token counts.
    ``placeholder`` (the token TFT writes for an empty vocabulary) is dropped
    from an otherwise empty base so it does not occupy id 0 forever.
    """
    if placeholder is not None and base == [placeholder]:
        base = []
    kept = counts.filter(pc.greater_equal(counts.column("c"), frequency_threshold))
    if base:
        kept = kept.filter(pc.invert(pc.is_in(kept.column("t"), value_set=pa.array(base, pa.binary()))))
    order = pc.sort_indices(kept, sort_keys=[("c", "descending"), ("t", "descending")])
    room = len(order) if top_k is None else max(0, top_k - len(base))
    new = kept.column("t").take(order[:room]).to_pylist()
    return base + new, Growth(base=len(base), gained=len(new), capped=room < len(order))


def extend_global(base_lines: list[bytes], field_names: list[str], new_tokens: list[list[bytes]]) -> list[bytes]:
    """The base global id space plus ``FIELD=token`` lines for every field's new tokens."""
    lines = list(base_lines)
    for name, tokens in zip(field_names, new_tokens):
        prefix = name.encode() + b"="
        lines += [prefix + t for t in tokens]
    return lines
