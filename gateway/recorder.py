"""Scan records: one row per judgement, stored after the answer is decided. A database that is down or locked
costs a prediction its record, never its answer: the answer then says `"recorded": false`, and the failure is
counted (fakelens_record_failures_total)."""
from __future__ import annotations

import dataclasses
import datetime as dt
import logging

from fakelens.judge import Judgement
from gateway.metrics import RECORD_FAILURES, RECORD_SECONDS, SCANS_RECORDED
from gateway.storage import ScanStore, StoreError, now

log = logging.getLogger(__name__)


def row(j: Judgement, api_key_id: str | None, image_expires_at: dt.datetime | None) -> dict:
    """The scan record of one judgement; the upload's bytes too when it carries an expiry."""
    ex, h = j.examined, j.examined.hashes
    return {"sha256": h.sha256, "pdq": h.pdq, "pdq_quality": h.pdq_quality,
            "width": ex.upload.width, "height": ex.upload.height, "format": ex.upload.format,
            "verdict": j.decision.verdict, "decided_by": j.decision.decided_by,
            "prob_fake": round(j.reading.prob_fake, 6),
            "models": {m: {"prob_fake": round(a.prob_fake, 6), "version": a.version} for m, a in j.models.items()},
            "rule": dataclasses.asdict(j.rule),
            "provenance": {"ai_generated": ex.provenance.ai_generated,
                           "sources": [{"source": e.source, "generator": e.generator, "ai_generated": e.ai_generated}
                                       for e in ex.provenance.evidence]},
            "api_key_id": api_key_id,
            "image": ex.raw if image_expires_at else None, "image_expires_at": image_expires_at}


class Recorder:
    """Stores judgements as scan records; with `keep_images_days`, the uploads' bytes too, for that long."""

    def __init__(self, scans: ScanStore, keep_images_days: float | None = None):
        self.scans, self.keep_images_days = scans, keep_images_days

    def record(self, judgements: list[Judgement], api_key_id: str | None) -> list[str | None]:
        """The scan id of each judgement, in order (None for all when they could not be stored)."""
        expires = now() + dt.timedelta(days=self.keep_images_days) if self.keep_images_days is not None else None
        rows = [row(j, api_key_id, expires) for j in judgements]
        try:
            with RECORD_SECONDS.time():  # failures too: a lock timeout shows here
                ids = self.scans.record(rows)
        except StoreError as exc:
            log.warning("scan records not stored: %s", exc)
            RECORD_FAILURES.labels("record").inc(len(rows))
            return [None] * len(rows)
        SCANS_RECORDED.inc(len(ids))
        return list(ids)
