"""The in-memory (``--cache``) pass order: every row once per pass, reshuffled each pass, repeatable by seed."""
import numpy as np

from ctrflow.model.inputs import _index_batches


def _passes(ds, n: int) -> list[list[np.ndarray]]:
    return [[b.numpy() for b in ds] for _ in range(n)]


def test_each_pass_is_a_permutation_cut_into_batches_with_a_short_last_one() -> None:
    for batches in _passes(_index_batches(10, 4, shuffle=True, seed=3, repeat=False), 3):
        assert [len(b) for b in batches] == [4, 4, 2]
        assert sorted(np.concatenate(batches).tolist()) == list(range(10))


def test_passes_reshuffle_and_a_seed_repeats_its_orders() -> None:
    first = [np.concatenate(p).tolist() for p in _passes(_index_batches(50, 8, shuffle=True, seed=7, repeat=False), 3)]
    again = [np.concatenate(p).tolist() for p in _passes(_index_batches(50, 8, shuffle=True, seed=7, repeat=False), 3)]
    assert first == again  # same seed, same sequence of epochs
    assert len({tuple(p) for p in first}) == 3  # a new order every pass
    assert all(p != list(range(50)) for p in first)


def test_unshuffled_passes_keep_file_order_and_repeat_runs_pass_after_pass() -> None:
    ds = _index_batches(6, 4, shuffle=False, seed=None, repeat=True)
    assert [b.numpy().tolist() for b in ds.take(4)] == [[0, 1, 2, 3], [4, 5], [0, 1, 2, 3], [4, 5]]


def test_row_gatherer_matches_gathering_every_column_alone() -> None:
    import tensorflow as tf

    from ctrflow.model.inputs import _row_gatherer

    rng = np.random.default_rng(0)
    columns = ({"a": tf.constant(rng.integers(0, 9, 12)), "b": tf.constant(rng.random(12, dtype=np.float32)),
                "c": tf.constant(rng.integers(0, 9, 12)), "tags": tf.constant(rng.integers(-1, 9, (12, 3)))},
               tf.constant(rng.random((12, 1), dtype=np.float32)))
    idx = tf.constant([5, 0, 11, 5], tf.int64)
    got = _row_gatherer(columns)(idx)
    want = tf.nest.map_structure(lambda t: tf.gather(t, idx), columns)
    for g, w in zip(tf.nest.flatten(got), tf.nest.flatten(want)):
        assert g.dtype == w.dtype and g.shape == w.shape
        np.testing.assert_array_equal(g.numpy(), w.numpy())
