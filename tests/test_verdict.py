"""The verdict rule (gateway/verdict.py) as the model repository states it: no torch, no Triton."""
from __future__ import annotations

import json

import pytest

from gateway.verdict import Rule, RuleError

SHARED = json.dumps({"threshold": 0.5, "unsure_margin": 0.2, "max_detail_lost": 8.0})
PARAMS = {"a": {"ensemble_weight": "0.75", "verdict_rule": SHARED}, "b": {"ensemble_weight": "0.25", "verdict_rule": SHARED}}
NOTHING = {"ai_generated": None, "evidence": []}


def test_rule_is_read_from_the_model_parameters():
    rule = Rule.from_parameters(PARAMS)
    assert rule.weights == {"a": 0.75, "b": 0.25} and rule.unsure_margin == 0.2 and rule.max_detail_lost == 8.0
    assert rule.combine({"a": 1.0, "b": 0.0}) == 0.75
    assert rule.combine({"b": 0.4}) == pytest.approx(0.4)  # renormalised over the models that answered


@pytest.mark.parametrize("params", [
    {"a": {"ensemble_weight": "1"}},  # exported but never evaluated
    {"a": PARAMS["a"], "b": {"ensemble_weight": "0.2", "verdict_rule": SHARED.replace("0.2", "0.1")}},
])
def test_a_missing_or_inconsistent_rule_is_an_error_not_a_default(params):
    with pytest.raises(RuleError):
        Rule.from_parameters(params)


@pytest.mark.parametrize("p, detail, verdict", [
    (0.95, 0.0, "FAKE"), (0.05, 3.0, "REAL"),
    (0.65, 0.0, "UNSURE"), (0.36, 0.0, "UNSURE"),  # within 0.2 of the threshold
    (0.99, 8.5, "UNSURE"),  # outside the domain, however sure the thumbnail looks
])
def test_three_way_verdict(p, detail, verdict):
    d = Rule.from_parameters(PARAMS).decide(p, detail, (640, 480), NOTHING)
    assert d["verdict"] == verdict
    assert (d["reason"] is None) == (verdict != "UNSURE") and (d["confidence"] is None) == (verdict == "UNSURE")
    if verdict == "UNSURE" and detail > 8:
        assert "640x480" in d["reason"] and "32x32" in d["reason"]
