"""Running an iterator ahead of its consumer in a background thread.

A DoFn in Beam's in-process runner works depth-first: it yields a batch, the
downstream transforms process it, and only then does the DoFn produce the
next one. Reading and parsing a CSV batch is mostly Arrow work that releases
the GIL, so doing it in a thread one or two batches ahead lets it run on the
second core while the pipeline's thread transforms the batch before (see
``beam_jobs.input.transforms.ReadRows(prefetch=True)``, which preprocess uses).
"""
from __future__ import annotations

import queue
import threading
from collections.abc import Iterable, Iterator
from typing import TypeVar

T = TypeVar("T")
_END = object()


def prefetched(items: Iterable[T], depth: int = 2) -> Iterator[T]:
    """``items``, produced by a background thread at most ``depth`` ahead; its errors re-raise here.

    Closing the returned generator early (an error downstream) stops the
    thread after the item it is producing. Beam metrics are thread-local, so
    ``items`` must not update them: count in the consumer.
    """
    slots: queue.Queue = queue.Queue(depth)
    stop = threading.Event()

    def put(entry) -> bool:
        while not stop.is_set():
            try:
                slots.put(entry, timeout=0.1)
                return True
            except queue.Full:
                continue
        return False

    def produce() -> None:
        try:
            for item in items:
                if not put((item, None)):
                    return
            put((_END, None))
        except BaseException as e:  # noqa: BLE001 - handed to the consumer, which re-raises it
            put((_END, e))

    thread = threading.Thread(target=produce, name="prefetch", daemon=True)
    thread.start()
    try:
        while True:
            item, error = slots.get()
            if error is not None:
                raise error
            if item is _END:
                return
            yield item
    finally:
        stop.set()
        thread.join()
