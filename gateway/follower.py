"""The bank follower: keeps a worker's index of known images up with the database, whatever the traffic.

New entries every SYNC_S seconds, so a review in one worker is matched by every worker within a second
(the worker that stored it syncs at once: gateway/review.py), and a large import SYNC_ROWS at a time,
with no request waiting for it. With the database away the index stays as it was, and the failure is
counted.
"""
from __future__ import annotations

import weakref

import sqlalchemy as sa

from fakelens.known import BankEntries, Index
from gateway.metrics import RECORD_FAILURES
from gateway.periodic import Periodic
from gateway.storage import StoreError

SYNC_S = 0.5


class Follower(Periodic):
    """Ends with its index (an app a test made and dropped), or at stop()."""
    every_s = SYNC_S

    def __init__(self, index: Index, banks: BankEntries):
        super().__init__("bank-follower")
        self._index, self.banks = weakref.ref(index), banks

    def step(self) -> bool:
        index = self._index()
        if index is None:
            self._stopped.set()
            return True
        try:
            return index.sync(self.banks)
        except (sa.exc.SQLAlchemyError, StoreError):
            RECORD_FAILURES.labels("sync").inc()
            return True
