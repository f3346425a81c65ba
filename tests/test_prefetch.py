"""prefetched(): same items in order, errors raised in the consumer, an early exit stops the reader."""

from __future__ import annotations

import threading

import pytest

from palace_pg.source.prefetch import prefetched


def test_items_arrive_in_order():
    assert list(prefetched(iter(range(100)), depth=2)) == list(range(100))


def test_an_error_in_the_reader_is_raised_in_the_consumer():
    def broken():
        yield 1
        raise ValueError("damaged page")

    got = []
    with pytest.raises(ValueError, match="damaged page"):
        for item in prefetched(broken()):
            got.append(item)
    assert got == [1]


def test_leaving_early_stops_and_closes_the_reader():
    closed = threading.Event()

    def endless():
        try:
            i = 0
            while True:
                yield i
                i += 1
        finally:
            closed.set()

    for item in prefetched(endless()):
        if item == 3:
            break
    assert closed.wait(5)
