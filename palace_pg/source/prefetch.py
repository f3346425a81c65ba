"""Read the next batch while the current one is being written.

Reading a page (sqlite steps, numpy copies) and writing one (COPY, whose
server side runs in another process) overlap on two cores.  At most ``depth``
batches wait in the queue, so memory stays flat; an error in the reader is
raised in the consumer; leaving the loop early stops the reader.
"""

from __future__ import annotations

import queue
import threading
from typing import Iterator, TypeVar

T = TypeVar("T")

_DONE = object()


class _Failed:
    def __init__(self, exc: BaseException) -> None:
        self.exc = exc


def prefetched(source: Iterator[T], depth: int = 1) -> Iterator[T]:
    """Iterate ``source`` in a background thread, ``depth`` items ahead."""
    slots: queue.Queue = queue.Queue(maxsize=depth)
    stop = threading.Event()

    def put(item) -> bool:
        while not stop.is_set():
            try:
                slots.put(item, timeout=0.1)
                return True
            except queue.Full:
                continue
        return False

    def produce() -> None:
        try:
            for item in source:
                if not put(item):
                    return
            put(_DONE)
        except BaseException as exc:  # handed to the consumer, raised there
            put(_Failed(exc))
        finally:
            close = getattr(source, "close", None)
            if close is not None:
                close()  # a generator's own cleanup (its sqlite connection) runs in its thread

    worker = threading.Thread(target=produce, name="palace_pg-prefetch", daemon=True)
    worker.start()
    try:
        while True:
            item = slots.get()
            if item is _DONE:
                return
            if isinstance(item, _Failed):
                raise item.exc
            yield item
    finally:
        stop.set()
        worker.join(timeout=5)
