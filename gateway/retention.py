"""Retention of kept upload images (FAKELENS_KEEP_IMAGES): past their time their bytes are dropped, the records
stay. A thread of each worker sweeps, off the request path; a sweep is one UPDATE, and two at once are harmless."""
from __future__ import annotations

import logging

from gateway.periodic import Periodic
from gateway.storage import ScanStore, StoreError

SWEEP_S = 60
log = logging.getLogger(__name__)


class Sweeper(Periodic):
    """Drops the bytes of kept uploads past their time, every SWEEP_S."""
    every_s = SWEEP_S

    def __init__(self, scans: ScanStore):
        super().__init__("retention-sweeper")
        self.scans = scans

    def step(self) -> bool:
        try:
            self.scans.drop_expired_images()
        except StoreError as exc:
            log.warning("expired images not dropped: %s", exc)
        return True
