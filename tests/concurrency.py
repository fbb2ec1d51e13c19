"""Run a function in several threads released at the same instant."""

from __future__ import annotations

import threading
from collections.abc import Callable


def run_together(target: Callable[[int], object], count: int) -> list[BaseException]:
    """Call target(0..count-1) in `count` threads started behind one barrier; return the
    exceptions they raised (empty when all succeeded)."""
    barrier = threading.Barrier(count)
    errors: list[BaseException] = []

    def run(index: int) -> None:
        barrier.wait()
        try:
            target(index)
        except Exception as exc:  # noqa: BLE001 - returned to the test, which asserts on it
            errors.append(exc)

    threads = [threading.Thread(target=run, args=(index,)) for index in range(count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return errors


def eventually(predicate: Callable[[], object], timeout: float = 10.0, interval: float = 0.05) -> object:
    """Poll until predicate() is truthy and return it; AssertionError after `timeout` seconds."""
    import time

    deadline = time.monotonic() + timeout
    while True:
        result = predicate()
        if result:
            return result
        if time.monotonic() >= deadline:
            raise AssertionError(f"condition not met within {timeout}s")
        time.sleep(interval)
