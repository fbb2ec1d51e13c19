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
