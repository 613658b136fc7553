"""The verdict rule (gateway/verdict.py) as the model repository states it: no torch, no Triton."""
from __future__ import annotations

import json

import pytest

from gateway.verdict import Rule, RuleError

SHARED = json.dumps({"threshold": 0.5, "unsure_margin": 0.2, "max_detail_lost": 8.0, "max_side": 128,
                     "confidence": {"native": 0.99, "resized": 0.97}})
PARAMS = {"a": {"ensemble_weight": "0.75", "verdict_rule": SHARED}, "b": {"ensemble_weight": "0.25", "verdict_rule": SHARED}}
NOTHING = {"ai_generated": None, "evidence": []}


def test_rule_is_read_from_the_model_parameters():
    rule = Rule.from_parameters(PARAMS)
    assert rule.weights == {"a": 0.75, "b": 0.25} and rule.unsure_margin == 0.2 and rule.max_detail_lost == 8.0
    assert rule.max_side == 128 and rule.confidence == {"native": 0.99, "resized": 0.97}
    assert rule.combine({"a": 1.0, "b": 0.0}) == 0.75
    assert rule.combine({"b": 0.4}) == pytest.approx(0.4)  # renormalised over the models that answered


@pytest.mark.parametrize("params", [
    {"a": {"ensemble_weight": "1"}},  # exported but never evaluated
    {"a": PARAMS["a"], "b": {"ensemble_weight": "0.2", "verdict_rule": SHARED.replace("0.2", "0.1")}},
    {"a": {"ensemble_weight": "1", "verdict_rule": json.dumps({"threshold": 0.5, "unsure_margin": 0.2,
                                                                 "max_detail_lost": 8.0})}},  # an older rule
])
def test_a_missing_or_inconsistent_rule_is_an_error_not_a_default(params):
    with pytest.raises(RuleError):
        Rule.from_parameters(params)


@pytest.mark.parametrize("p_models, size, detail, verdict, confidence", [
    ({"a": 0.95, "b": 0.9}, (32, 32), 0.0, "FAKE", 0.99),  # CIFAKE's own size
    ({"a": 0.05, "b": 0.1}, (64, 64), 3.0, "REAL", 0.97),  # an enlarged 32x32 image
    ({"a": 0.65, "b": 0.6}, (32, 32), 0.0, "UNSURE", None),  # within 0.2 of the threshold
    ({"a": 0.99, "b": 0.99}, (64, 64), 8.5, "UNSURE", None),  # more detail than an enlargement has
    ({"a": 0.01, "b": 0.01}, (129, 100), 0.0, "UNSURE", None),  # larger than any enlargement measured
    ({"a": 0.01, "b": 0.01}, (4032, 3024), 1.0, "UNSURE", None),  # a smooth phone photo: not the models' domain
    ({"a": 0.95, "b": 0.3}, (96, 96), 1.0, "UNSURE", None),  # enlarged, and the models disagree
    ({"a": 0.95, "b": 0.3}, (32, 32), 0.0, "FAKE", 0.99),  # native: the weighted mean decides (0.79)
])
def test_three_way_verdict(p_models, size, detail, verdict, confidence):
    d = Rule.from_parameters(PARAMS).decide(p_models, size, detail, NOTHING)
    assert d["verdict"] == verdict and d["confidence"] == confidence
    assert (d["reason"] is None) == (verdict != "UNSURE")
    assert d["decided_by"] == ("models" if verdict != "UNSURE" else None)


def test_outside_the_domain_the_models_are_not_used_and_the_reason_says_why():
    rule = Rule.from_parameters(PARAMS)
    big = rule.decide({"a": 0.99, "b": 0.99}, (640, 480), 2.0, NOTHING)
    assert big["models_used"] is False and big["domain"] is None
    assert "640x480" in big["reason"] and "128 px" in big["reason"]
    detailed = rule.decide({"a": 0.99, "b": 0.99}, (100, 100), 12.0, NOTHING)
    assert detailed["models_used"] is False and "12.0 > 8" in detailed["reason"]
    close = rule.decide({"a": 0.6, "b": 0.6}, (32, 32), 0.0, NOTHING)
    assert close["models_used"] is True and close["domain"] == "native"


def test_ai_provenance_decides_before_the_models_and_claims_no_model_confidence():
    found = {"ai_generated": True, "evidence": [{"source": "watermark", "detail": "invisible DWT-DCT watermark",
                                                 "generator": "FLUX", "ai_generated": True}]}
    d = Rule.from_parameters(PARAMS).decide({"a": 0.01, "b": 0.01}, (32, 32), 0.0, found)
    assert d["verdict"] == "FAKE" and d["decided_by"] == "provenance" and d["models_used"] is False
    assert d["confidence"] is None and "FLUX" in d["reason"]
