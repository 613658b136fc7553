"""The judge (fakelens/judge.py) on typed inputs, and the JSON and scan record the gateway makes of a judgement."""
from __future__ import annotations

import json
from dataclasses import asdict

import numpy as np
import pytest

from fakelens.backends import Answer, FanOut, ModelError
from fakelens.examine import Examined
from fakelens.images import Upload
from fakelens.judge import Judge, Judgement, ModelAnswer
from fakelens.known import Hashes, Index, Match
from fakelens.provenance import NOTHING, Evidence, Provenance
from fakelens.verdict import Decision, Reading, Rule, RuleError
from gateway.recorder import row
from gateway.responses import THUMBNAIL_NOTE, prediction

SHARED = json.dumps({"threshold": 0.5, "unsure_margin": 0.2, "max_detail_lost": 8.0, "max_side": 128,
                     "confidence": {"native": 0.99, "resized": 0.97}})
RULE = Rule({"a": 0.75, "b": 0.25}, 0.5, 0.2, 8.0, 128, {"native": 0.99, "resized": 0.97})
PIXELS = np.zeros((32, 32, 3), np.uint8)
PDQ = "5a" * 32
WHEN = "2026-12-01T10:00:00+00:00"
FLUX = Provenance(True, (Evidence("watermark", "invisible DWT-DCT watermark, 46 of 46 bits", "FLUX", True,
                                  {"bits_matched": 46, "of": 46}),))


def examined(size=(32, 32), detail=0.0, provenance=NOTHING, sha="e" * 64, pdq=PDQ, raw=b"raw") -> Examined:
    return Examined(raw, Upload(PIXELS, *size, detail, "PNG"), provenance, Hashes(sha, pdq, 90) if sha else None)


def fanout(p: dict[str, list[float]], errors: dict[str, ModelError] | None = None, rule: str = SHARED) -> FanOut:
    weights = {"a": "0.75", "b": "0.25"}
    return FanOut({m: Answer(np.array(v), 12.5 + i, str(i + 1), {"ensemble_weight": weights[m], "verdict_rule": rule})
                   for i, (m, v) in enumerate(p.items())}, errors or {})


def bank(*entries: tuple[int, str, str]) -> Index:
    """An index of (entry, sha256, pdq) entries of the bank `reviewed`, labelled REAL."""
    index = Index()
    index.add({"entry": [e for e, _, _ in entries], "sha256": [s for _, s, _ in entries],
               "pdq": [p for _, _, p in entries], "pdq_quality": [90] * len(entries), "replaces": [None] * len(entries),
               "bank": ["reviewed"] * len(entries), "label": ["REAL"] * len(entries), "note": ["checked"] * len(entries),
               "scan_id": ["s1"] * len(entries), "created_at": [WHEN] * len(entries)})
    return index


def test_each_upload_gets_every_models_answer_read_through_the_rule_the_answers_carry():
    uploads = [examined(), examined((64, 64), 3.0), examined((640, 480), 20.0)]
    [native, resized, photo] = Judge().judge(uploads, fanout({"a": [0.9, 0.1, 0.9], "b": [0.8, 0.2, 0.1]}))
    assert native == Judgement(uploads[0], RULE, {"a": ModelAnswer(0.9, "FAKE", 12.5, "1"),
                                                  "b": ModelAnswer(0.8, "FAKE", 13.5, "2")}, {},
                               Reading({"a": 0.9, "b": 0.8}, pytest.approx(0.875), "native", (32, 32), 0.0), None,
                               Decision("FAKE", "models", None, 0.99, "native", True))
    assert resized.decision == Decision("REAL", "models", None, 0.97, "resized", True)
    assert resized.models["b"] == ModelAnswer(0.2, "REAL", 13.5, "2") and resized.thumbnail_verdict == "REAL"
    assert photo.decision.verdict == "UNSURE" and photo.reading.domain is None and photo.thumbnail_verdict == "FAKE"


def test_models_that_failed_are_named_with_their_reason_and_the_others_decide():
    errors = {"b": ModelError("timeout", "b did not answer in time")}
    [j] = Judge().judge([examined()], fanout({"a": [0.1]}, errors))
    assert j.errors == {"b": "b did not answer in time"} and list(j.models) == ["a"]
    assert j.reading.prob_fake == pytest.approx(0.1) and j.decision.verdict == "REAL"


def test_answers_without_a_common_rule_cannot_be_judged():
    with pytest.raises(RuleError):
        Judge().judge([examined()], fanout({"a": [0.1]}, rule="{}"))
    with pytest.raises(RuleError):
        Judge().judge([examined()], FanOut({}, {"a": ModelError("timeout", "late")}))


def test_a_copy_of_a_reviewed_image_is_decided_by_its_review_and_an_ai_file_by_its_provenance():
    judge = Judge(bank((5, "f" * 64, PDQ)))
    [copy, generated, unrelated, unhashed] = judge.judge(
        [examined(pdq="5b" + PDQ[2:]), examined(provenance=FLUX), examined(pdq="a5" * 32), examined(sha=None)],
        fanout({"a": [0.9] * 4, "b": [0.9] * 4}))
    assert copy.match == Match("reviewed", 5, "s1", 1, "REAL", "checked", WHEN)
    assert copy.decision == Decision("REAL", "review", "Seen before (a copy at PDQ distance 1): reviewed as REAL on "
                                                       "2026-12-01: checked")
    assert generated.match.distance == 0 and generated.decision.decided_by == "provenance"  # matched, not deciding
    assert unrelated.match is None and unrelated.decision.decided_by == "models"
    assert unhashed.match is None and unhashed.decision.decided_by == "models"
    assert Judge().judge([examined()], fanout({"a": [0.9]}))[0].match is None  # no index: no banks


def test_the_prediction_json_is_the_apis_shape_from_the_judgement():
    [j] = Judge(bank((5, "e" * 64, ""))).judge([examined(provenance=FLUX)], fanout({"a": [0.123456789], "b": [0.9]}))
    body = prediction(j, "abc", "a.png")
    assert list(body) == ["verdict", "decided_by", "confidence", "domain", "models_used", "reason", "prob_fake",
                          "thumbnail", "models", "provenance", "degraded", "missing", "errors", "scan_id", "recorded",
                          "filename"]
    assert body["verdict"] == "FAKE" and body["decided_by"] == "provenance" and body["models_used"] is False
    assert body["prob_fake"] == round(0.75 * 0.123456789 + 0.25 * 0.9, 6)
    assert body["thumbnail"] == {"note": THUMBNAIL_NOTE, "verdict": "REAL", "prob_fake": body["prob_fake"], "width": 32,
                                 "height": 32, "detail_lost": 0.0, "in_domain": True}
    assert body["models"] == {"a": {"prob_fake": 0.123457, "verdict": "REAL", "latency_ms": 12.5, "version": "1"},
                              "b": {"prob_fake": 0.9, "verdict": "FAKE", "latency_ms": 13.5, "version": "2"}}
    assert body["provenance"] == {"ai_generated": True, "evidence": [
        {"source": "watermark", "detail": "invisible DWT-DCT watermark, 46 of 46 bits", "generator": "FLUX",
         "ai_generated": True, "bits_matched": 46, "of": 46}]}
    assert (body["degraded"], body["missing"], body["errors"]) == (False, [], {})
    assert (body["scan_id"], body["recorded"], body["filename"]) == ("abc", True, "a.png")
    assert "match" not in body  # matched by its bytes, but provenance decided


def test_a_review_decision_carries_its_match_and_an_unrecorded_one_says_so():
    errors = {"b": ModelError("timeout", "b did not answer in time"), "c": ModelError("model_error", "boom")}
    [j] = Judge(bank((5, "e" * 64, ""))).judge([examined((640, 480), 20.0)], fanout({"a": [0.9]}, errors))
    body = prediction(j, None, None)
    assert list(body)[:7] == ["verdict", "decided_by", "confidence", "domain", "models_used", "reason", "match"]
    assert body["match"] == {"bank": "reviewed", "entry": 5, "scan_id": "s1", "distance": 0, "label": "REAL",
                             "note": "checked", "reviewed_at": WHEN}
    assert body["thumbnail"]["in_domain"] is False and body["thumbnail"]["width"] == 640
    assert (body["degraded"], body["missing"]) == (True, ["b", "c"])
    assert body["errors"] == {"b": "b did not answer in time", "c": "boom"}
    assert (body["scan_id"], body["recorded"], body["filename"]) == (None, False, None)


def test_a_scan_record_holds_the_judgement_and_the_upload_only_when_kept():
    [j] = Judge().judge([examined(provenance=FLUX)], fanout({"a": [0.123456789], "b": [0.9]}))
    assert row(j, "key1", None) == {
        "sha256": "e" * 64, "pdq": PDQ, "pdq_quality": 90, "width": 32, "height": 32, "format": "PNG",
        "verdict": "FAKE", "decided_by": "provenance", "prob_fake": round(0.75 * 0.123456789 + 0.25 * 0.9, 6),
        "models": {"a": {"prob_fake": 0.123457, "version": "1"}, "b": {"prob_fake": 0.9, "version": "2"}},
        "rule": asdict(RULE), "provenance": {"ai_generated": True, "sources": [
            {"source": "watermark", "generator": "FLUX", "ai_generated": True}]},
        "api_key_id": "key1", "image": None, "image_expires_at": None}
    import datetime as dt

    expires = dt.datetime(2027, 1, 1, tzinfo=dt.UTC)
    kept = row(j, None, expires)
    assert kept["image"] == b"raw" and kept["image_expires_at"] == expires and kept["api_key_id"] is None
