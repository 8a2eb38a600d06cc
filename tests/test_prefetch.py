"""The background iterator behind ReadRows(prefetch=True): order, errors, early close."""
from __future__ import annotations

import threading
import time

import pytest

from ctrflow.beam_jobs.input.prefetch import prefetched


def test_items_arrive_in_order_and_produced_ahead_in_another_thread():
    producers = []

    def items():
        for i in range(50):
            producers.append(threading.current_thread().name)
            yield i

    assert list(prefetched(items(), depth=3)) == list(range(50))
    assert set(producers) == {"prefetch"}


def test_an_error_in_the_producer_reraises_in_the_consumer_after_the_items_before_it():
    def items():
        yield 1
        yield 2
        raise ValueError("bad input file")

    got = []
    with pytest.raises(ValueError, match="bad input file"):
        for x in prefetched(items()):
            got.append(x)
    assert got == [1, 2]


def test_closing_early_stops_the_producer():
    produced = []

    def items():
        for i in range(1000):
            produced.append(i)
            yield i

    it = prefetched(items(), depth=2)
    assert next(it) == 0
    it.close()  # joins the thread: it stops after the item it was producing
    time.sleep(0.3)
    assert len(produced) <= 5 and not any(t.name == "prefetch" for t in threading.enumerate())
