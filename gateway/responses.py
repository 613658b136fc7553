"""The JSON of a prediction, built from the core's judgement: the API's one data model, written once."""
from __future__ import annotations

from fakelens.judge import Judgement
from fakelens.known import Match
from fakelens.verdict import REVIEW, Decision

THUMBNAIL_NOTE = "the models' view: the upload centre-cropped and scaled to 32x32"


def decision(d: Decision, m: Match | None) -> dict:
    """The verdict and what decided it; the bank entry too when a review did."""
    out = {"verdict": d.verdict, "decided_by": d.decided_by, "confidence": d.confidence, "domain": d.domain,
           "models_used": d.models_used, "reason": d.reason}
    if d.decided_by == REVIEW:
        out["match"] = match(m)
    return out


def match(m: Match) -> dict:
    """The bank entry that decided, as the API shows it."""
    return {"bank": m.bank, "entry": m.entry, "scan_id": m.scan_id, "distance": m.distance, "label": m.label,
            "note": m.note, "reviewed_at": m.reviewed_at}


def prediction(j: Judgement, scan_id: str | None, filename: str | None) -> dict:
    """One upload's answer; `scan_id` None when it was not recorded."""
    upload, p_fake = j.examined.upload, round(j.reading.prob_fake, 6)
    return {**decision(j.decision, j.match), "prob_fake": p_fake,
            "thumbnail": {"note": THUMBNAIL_NOTE, "verdict": j.thumbnail_verdict, "prob_fake": p_fake,
                          "width": upload.width, "height": upload.height, "detail_lost": upload.detail_lost,
                          "in_domain": j.reading.domain is not None},
            "models": {m: {"prob_fake": round(a.prob_fake, 6), "verdict": a.verdict, "latency_ms": round(a.latency_ms, 2),
                           "version": a.version} for m, a in j.models.items()},
            "provenance": j.examined.provenance.as_dict(), "degraded": bool(j.errors), "missing": sorted(j.errors),
            "errors": j.errors, "scan_id": scan_id, "recorded": scan_id is not None, "filename": filename}
