"""Fan-out to any number of readers that never slow the producer.

Each :class:`Subscription` has a bounded queue; when a reader falls behind, its oldest
items are dropped (and counted), so a slow browser or app never holds up analysis.
"""
from __future__ import annotations

import queue
import threading
from typing import Any, Callable, Iterator


class Subscription:
    """One reader's queue: ``get(timeout)``, iterate, ``close()`` to leave the hub."""

    def __init__(self, hub: Hub, maxsize: int, accept: Callable[[Any], bool] | None):
        self._hub, self._accept = hub, accept
        self._q: queue.Queue = queue.Queue(maxsize)
        self.dropped = 0
        self.closed = False

    def offer(self, item: Any) -> None:
        """Add an item (the hub calls this), dropping the oldest when full."""
        if self._accept is not None and not self._accept(item):
            return
        while True:
            try:
                self._q.put_nowait(item)
                return
            except queue.Full:
                try:
                    self._q.get_nowait()
                    self.dropped += 1
                except queue.Empty:
                    pass

    def get(self, timeout: float | None = None) -> Any:
        """The next item; raises queue.Empty after ``timeout`` seconds."""
        return self._q.get(timeout=timeout)

    def drain(self) -> list[Any]:
        """Every item waiting now, without blocking."""
        out = []
        while True:
            try:
                out.append(self._q.get_nowait())
            except queue.Empty:
                return out

    def __iter__(self) -> Iterator[Any]:
        while not self.closed:
            try:
                yield self.get(timeout=0.2)
            except queue.Empty:
                continue

    def close(self) -> None:
        """Leave the hub (iteration ends)."""
        self.closed = True
        self._hub.unsubscribe(self)


class Hub:
    """``publish(item)`` hands ``item`` to every subscription (thread-safe)."""

    def __init__(self) -> None:
        self._subs: list[Subscription] = []
        self._lock = threading.Lock()

    def subscribe(self, maxsize: int = 1000, accept: Callable[[Any], bool] | None = None) -> Subscription:
        """A new reader; ``accept(item)`` filters what it gets."""
        s = Subscription(self, maxsize, accept)
        with self._lock:
            self._subs.append(s)
        return s

    def unsubscribe(self, sub: Subscription) -> None:
        """Remove a reader (idempotent)."""
        with self._lock:
            if sub in self._subs:
                self._subs.remove(sub)

    def publish(self, item: Any) -> None:
        """Hand ``item`` to every reader."""
        with self._lock:
            subs = list(self._subs)
        for s in subs:
            s.offer(item)

    def close(self) -> None:
        """End every reader's iteration."""
        with self._lock:
            subs, self._subs = self._subs, []
        for s in subs:
            s.closed = True
