"""A daemon thread that does one piece of work again and again, and stops when asked."""
from __future__ import annotations

import threading


class Periodic(threading.Thread):
    """Calls `step()` until stopped, waiting `every_s` after each step that says there is nothing more to do
    (returns True); a step that returns False is followed at once by the next."""

    every_s: float

    def __init__(self, name: str):
        super().__init__(name=name, daemon=True)
        self._stopped = threading.Event()

    def step(self) -> bool:
        """One piece of the work; True when there is nothing more to do for now."""
        raise NotImplementedError

    def run(self) -> None:
        while not self._stopped.is_set():
            if self.step():
                self._stopped.wait(self.every_s)

    def stop(self, wait_s: float = 5) -> None:
        """Stop, and wait for a step under way to end (at most `wait_s`: a database that hangs must not hold up a
        worker's exit). A worker closes its database connections after this, and a step that opened one later
        would keep SQLite's write-ahead log beside the database."""
        self._stopped.set()
        self.join(wait_s)

    @classmethod
    def start_new(cls, *args) -> Periodic:
        """A thread of this kind, started."""
        thread = cls(*args)
        thread.start()
        return thread
