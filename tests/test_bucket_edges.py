"""Bucket edges, ids and positions of a whole bucketize group at once, against numpy column by column.

``pipeline.transform`` bucketizes all columns of a (num_buckets, epsilon) group
in one tensor, with ``+inf`` padding where a column's point masses left it fewer
edges than the others. Each row here is a column whose boundaries exercise one
case; numpy computes the same rule on that column alone, without padding.
"""
from __future__ import annotations

import numpy as np
import tensorflow as tf

from ctrflow.pipeline.transform import apply_edges, separate_point_masses

F32 = np.float32
TINY = np.finfo(F32).tiny

BOUNDARIES = np.array([
    [0, 0, 0, 0, 1, 2, 5],        # a zero point mass (nextafter(0) is a denormal: the smallest normal instead)
    [-3, -1, 0.5, 1, 2, 4, 8],    # all distinct
    [1, 1, 1, 2, 3, 3, 7],        # two point masses, runs of 3 and 2
    [4, 4, 4, 4, 4, 4, 4],        # one value only: two edges
    [-2, -2, -1, 0, 0, 6, 9],     # point masses at a negative value and at 0
], F32)


def numpy_edges(quantiles: np.ndarray) -> np.ndarray:
    """A repeated quantile v -> [v, next float after v] (the smallest normal float after 0)."""
    out = []
    values, counts = np.unique(quantiles.astype(F32), return_counts=True)
    for v, n in zip(values, counts):
        out.append(v)
        if n > 1:
            out.append(TINY if v == 0 else np.nextafter(v, F32(np.inf)))
    return np.sort(np.array(out, F32))


def numpy_ids_and_positions(x: np.ndarray, edges: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(bucket id, place in bucket) with the outer buckets as wide as their neighbours (0 wide: one edge)."""
    ids = np.searchsorted(edges, x, side="right")
    first = edges[1] - edges[0] if len(edges) > 1 else F32(0)
    last = edges[-1] - edges[-2] if len(edges) > 1 else F32(0)
    lo = np.concatenate([[edges[0] - first], edges]).astype(F32)
    hi = np.concatenate([edges, [edges[-1] + last]]).astype(F32)
    span = hi[ids] - lo[ids]
    with np.errstate(invalid="ignore", over="ignore"):
        pos = np.where(span > 0, np.clip((x - lo[ids]) / np.where(span > 0, span, F32(1)), 0, 1), 0)
    return ids, pos.astype(F32)


def _values(edges: np.ndarray) -> np.ndarray:
    """Every edge, the floats either side of it, mid-points, values beyond both ends, and +-inf.

    Denormals (the floats either side of 0) are left out: TensorFlow's CPU
    kernels flush them to 0, which numpy does not.
    """
    near = np.concatenate([edges, np.nextafter(edges, F32(-np.inf)), np.nextafter(edges, F32(np.inf))])
    mids = (edges[1:] + edges[:-1]) / 2 if len(edges) > 1 else edges
    v = np.concatenate([near, mids, [edges[0] - 100, edges[-1] + 100, -np.inf, np.inf, 0, -0.0]]).astype(F32)
    return v[(v == 0) | (np.abs(v) >= TINY)]


def test_point_masses_become_edges_of_their_own_per_column():
    edges, counts = separate_point_masses(tf.constant(BOUNDARIES))
    edges, counts = edges.numpy(), counts.numpy()
    for row, boundaries in enumerate(BOUNDARIES):
        expected = numpy_edges(boundaries)
        assert counts[row] == len(expected)
        np.testing.assert_array_equal(edges[row, :counts[row]], expected)
        assert np.isposinf(edges[row, counts[row]:]).all()  # padding only after the column's edges
    np.testing.assert_array_equal(counts, [5, 7, 6, 2, 7])


def test_ids_and_positions_of_a_group_equal_numpy_column_by_column():
    edges, counts = separate_point_masses(tf.constant(BOUNDARIES))
    per_column = [_values(numpy_edges(b)) for b in BOUNDARIES]
    rows = max(len(v) for v in per_column)
    x = np.stack([np.resize(v, rows) for v in per_column], axis=1)  # [rows, columns]
    ids, positions = apply_edges(tf.constant(x), edges, counts)
    ids, positions = ids.numpy(), positions.numpy()
    assert ids.dtype == np.int64 and positions.dtype == np.float32
    for col, boundaries in enumerate(BOUNDARIES):
        want_ids, want_pos = numpy_ids_and_positions(x[:, col], numpy_edges(boundaries))
        np.testing.assert_array_equal(ids[:, col], want_ids, err_msg=f"column {col}")
        # atol: a denormal result is flushed to 0 on CPU
        np.testing.assert_allclose(positions[:, col], want_pos, rtol=1e-6, atol=TINY, err_msg=f"column {col}")
    # the point masses: x == 0 sits alone in its bucket at position 0; +inf never counts the padding
    assert ids[:, 0].max() == 5 and ids[:, 3].max() == 2
    zero = x[:, 0] == 0
    assert (positions[zero, 0] == 0).all() and len(set(ids[zero, 0])) == 1
