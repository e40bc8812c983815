"""Reading ahead: items made on a background thread while the model works on the ones before.

Eval reads and decodes the next chunks of samples this way, and training prepares the next optimizer steps'
batches (with the data position after each, for its checkpoints). One mechanism, so both stop the same way
and raise a failure where the failed item would have come.
"""

from __future__ import annotations

import contextlib
import queue
import threading
from collections.abc import Iterable, Iterator
from typing import Any, Generic, TypeVar

Item = TypeVar("Item")

POLL_SECONDS = 0.1  # how often a producer waiting on a full queue checks whether it should stop


class Prefetched(Iterator[Item], Generic[Item]):
    """`items`, made on a thread started at once, up to `depth` ahead. An error making an item is raised by the
    `next()` that would have returned it; `close()` (or leaving a `with` block) stops the thread, which
    finishes at most the item it is making. Items come in their order; the thread is named `name`."""

    def __init__(self, items: Iterable[Item], depth: int, name: str) -> None:
        self._made: queue.Queue[tuple[str, Any]] = queue.Queue(maxsize=depth)
        self._stop = threading.Event()
        self._finished = False
        self._thread = threading.Thread(target=self._produce, args=(iter(items),), name=name, daemon=True)
        self._thread.start()

    def _put(self, event: tuple[str, Any]) -> bool:
        while not self._stop.is_set():
            with contextlib.suppress(queue.Full):
                self._made.put(event, timeout=POLL_SECONDS)
                return True
        return False

    def _produce(self, items: Iterator[Item]) -> None:
        try:
            for item in items:
                if not self._put(("item", item)):
                    return
        except BaseException as error:  # handed to the consumer, which raises it
            self._put(("error", error))
            return
        self._put(("end", None))

    def __next__(self) -> Item:
        if self._finished:
            raise StopIteration
        kind, value = self._made.get()
        if kind == "item":
            return value
        self._finished = True
        self.close()
        if kind == "error":
            raise value
        raise StopIteration

    def close(self, timeout: float | None = None) -> None:
        self._finished = True
        self._stop.set()
        self._thread.join(timeout)

    def __enter__(self) -> Prefetched[Item]:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
