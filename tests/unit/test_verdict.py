"""The verdict rule (fakelens/verdict.py) as the model repository states it: every field of every decision."""
from __future__ import annotations

import json

import pytest

from fakelens.known import Match
from fakelens.provenance import NOTHING, Evidence, Provenance
from fakelens.verdict import DOMAIN, Decision, Reading, Rule, RuleError

SHARED = json.dumps({"threshold": 0.5, "unsure_margin": 0.2, "max_detail_lost": 8.0, "max_side": 128,
                     "confidence": {"native": 0.99, "resized": 0.97}})
PARAMS = {"a": {"ensemble_weight": "0.75", "verdict_rule": SHARED}, "b": {"ensemble_weight": "0.25", "verdict_rule": SHARED}}
RULE = Rule.from_parameters(PARAMS)
MATCH = Match("reviewed", 7, "ab" * 16, 3, "REAL", "camera original", "2026-12-01T10:00:00+00:00")
GENERATED = Provenance(True, (Evidence("xmp", "IPTC DigitalSourceType digitalCapture", "Cam 1", False),
                              Evidence("watermark", "invisible DWT-DCT watermark, 46 of 46 bits", "FLUX", True),
                              Evidence("png_text", "parameters: generation parameters", "Forge", True)))


def decide(p_models: dict[str, float], size=(32, 32), detail=0.0, provenance=NOTHING, match=None) -> Decision:
    return RULE.decide(RULE.read(p_models, size, detail), provenance, match)


def test_rule_is_read_from_the_model_parameters():
    assert RULE == Rule({"a": 0.75, "b": 0.25}, 0.5, 0.2, 8.0, 128, {"native": 0.99, "resized": 0.97})
    assert isinstance(RULE.max_side, int) and isinstance(RULE.threshold, float)


@pytest.mark.parametrize("params, words", [
    ({"a": {"ensemble_weight": "1"}}, "no verdict rule in the config of a (run `make evaluate`)"),
    ({"a": {"verdict_rule": SHARED}, "b": {}}, "no verdict rule in the config of a, b"),
    ({"a": PARAMS["a"], "b": {"ensemble_weight": "0.2", "verdict_rule": SHARED.replace("0.2", "0.1")}},
     "the models carry different verdict rules"),
    ({"a": {"ensemble_weight": "1", "verdict_rule": json.dumps({"threshold": 0.5, "unsure_margin": 0.2,
                                                                 "max_detail_lost": 8.0})}},
     "the verdict rule lacks 'max_side' (written by an older `make evaluate`: run it again)"),
    ({"a": {"ensemble_weight": "1", "verdict_rule": json.dumps({**json.loads(SHARED), "confidence": {"native": 1}})}},
     "the verdict rule lacks 'resized'"),
])
def test_a_missing_or_inconsistent_rule_is_an_error_not_a_default(params, words):
    with pytest.raises(RuleError, match=words.replace("(", r"\(").replace(")", r"\)").replace("`", "`")):
        Rule.from_parameters(params)


@pytest.mark.parametrize("p_fake, expected", [
    ({"a": 1.0, "b": 0.0}, 0.75),
    ({"a": 0.2, "b": 0.6}, 0.3),
    ({"b": 0.4}, 0.4),  # renormalised over the models that answered
    ({"a": 0.2, "c": 0.9}, 0.2),  # a model the rule does not weigh counts for nothing
    ({"c": 0.9, "d": 0.3}, 0.6),  # only unweighted models answered: they count equally
])
def test_combine_is_the_weighted_mean_of_the_models_that_answered(p_fake, expected):
    assert RULE.combine(p_fake) == pytest.approx(expected, abs=1e-12)


def test_zero_weights_count_equally_and_never_divide_by_zero():
    rule = Rule({"a": 0.0, "b": 0.0}, 0.5, 0.2, 8.0, 128, {"native": 0.99, "resized": 0.97})
    assert rule.combine({"a": 0.2, "b": 0.8}) == pytest.approx(0.5)
    assert rule.combine({"a": 0.3}) == pytest.approx(0.3)


@pytest.mark.parametrize("p, label", [(0.5, "FAKE"), (0.4999, "REAL"), (0.0, "REAL"), (1.0, "FAKE")])
def test_label_reads_fake_at_or_above_the_threshold(p, label):
    assert RULE.label(p) == label


@pytest.mark.parametrize("size, detail, domain", [
    ((32, 32), 50.0, "native"),  # CIFAKE's size, whatever the detail
    ((32, 33), 0.0, "resized"),
    ((128, 128), 8.0, "resized"),  # the limits are inclusive
    ((129, 128), 0.0, None),
    ((128, 64), 8.01, None),
    ((16, 16), 0.0, "resized"),
])
def test_domain(size, detail, domain):
    assert RULE.domain(size, detail) == domain


def test_read_computes_each_figure_once_for_the_decision():
    reading = RULE.read({"a": 0.9, "b": 0.5}, (64, 48), 3.5)
    assert reading == Reading({"a": 0.9, "b": 0.5}, pytest.approx(0.8), "resized", (64, 48), 3.5)


@pytest.mark.parametrize("p_models, size, detail, expected", [
    ({"a": 0.95, "b": 0.9}, (32, 32), 0.0, Decision("FAKE", "models", None, 0.99, "native", True)),
    ({"a": 0.05, "b": 0.1}, (64, 64), 3.0, Decision("REAL", "models", None, 0.97, "resized", True)),
    ({"a": 0.95, "b": 0.3}, (32, 32), 0.0, Decision("FAKE", "models", None, 0.99, "native", True)),  # 0.79
    ({"a": 0.05, "b": 0.9}, (32, 32), 0.0, Decision("REAL", "models", None, 0.99, "native", True)),  # 0.2625
])
def test_the_models_decide_inside_their_domain(p_models, size, detail, expected):
    assert decide(p_models, size, detail) == expected


def test_too_close_to_the_line_is_unsure_and_says_the_score():
    assert decide({"a": 0.65, "b": 0.6}) == Decision(
        "UNSURE", None, "The models' combined score (0.64) is too close to the line (0.5 +/- 0.2) to mean anything.",
        None, "native", True)
    # the margin is exclusive: exactly on its edge the models decide
    rule = Rule({"a": 1.0}, 0.5, 0.25, 8.0, 128, {"native": 0.99, "resized": 0.97})
    assert [rule.decide(rule.read({"a": p}, (32, 32), 0.0), NOTHING).verdict for p in (0.75, 0.25, 0.7499)] == [
        "FAKE", "REAL", "UNSURE"]


def test_an_enlarged_image_the_models_disagree_on_is_unsure_and_names_the_dissent():
    assert decide({"a": 0.95, "b": 0.3}, (96, 96), 1.0) == Decision(
        "UNSURE", None, "This is an enlarged image, and the models disagree about it (b says REAL).", None, "resized", True)
    rule = Rule({"a": 0.7, "b": 0.15, "c": 0.15}, 0.5, 0.2, 8.0, 128, {"native": 0.99, "resized": 0.97})
    d = rule.decide(rule.read({"a": 0.05, "b": 0.9, "c": 0.8}, (96, 96), 1.0), NOTHING)
    assert d.reason == "This is an enlarged image, and the models disagree about it (b, c say FAKE)."


@pytest.mark.parametrize("size, detail, why", [
    ((640, 480), 2.0, "larger than the 128 px they were measured on"),
    ((129, 100), 0.0, "larger than the 128 px they were measured on"),
    ((100, 100), 12.0, "detail that their 32x32 view discards (12.0 > 8 grey levels)"),
])
def test_outside_the_domain_the_models_are_not_used_and_the_reason_says_why(size, detail, why):
    w, h = size
    assert decide({"a": 0.99, "b": 0.99}, size, detail) == Decision(
        "UNSURE", None, f"{DOMAIN} This {w}x{h} image is not one of those: it is {why}. On images from outside CIFAKE "
                        "their answers were no better than chance, so they do not decide.", None, None, False)


def test_ai_provenance_decides_first_and_names_the_first_ai_evidence():
    assert decide({"a": 0.01, "b": 0.01}, provenance=GENERATED, match=MATCH) == Decision(
        "FAKE", "provenance", "The file says it was generated: watermark invisible DWT-DCT watermark, 46 of 46 bits (FLUX).")
    unnamed = Provenance(True, (Evidence("c2pa", "content credentials: digitalSourceType x", None, True),))
    assert decide({"a": 0.5}, provenance=unnamed).reason == ("The file says it was generated: "
                                                              "c2pa content credentials: digitalSourceType x.")


def test_capture_provenance_does_not_decide():
    captured = Provenance(False, (Evidence("c2pa", "content credentials: digitalSourceType digitalCapture", "Cam", False),))
    assert decide({"a": 0.9, "b": 0.9}, provenance=captured).decided_by == "models"


def test_a_match_decides_before_the_models_and_says_when_and_what_was_reviewed():
    assert decide({"a": 0.99, "b": 0.99}, match=MATCH) == Decision(
        "REAL", "review", "Seen before (a copy at PDQ distance 3): reviewed as REAL on 2026-12-01: camera original")
    same = Match("reviewed", 8, None, 0, "FAKE", None, None)
    assert decide({"a": 0.01}, (4000, 3000), 30.0, match=same) == Decision(
        "FAKE", "review", "Seen before (the same file): reviewed as FAKE on .")
    assert decide({"a": 0.01}, match=Match("b", 9, None, 1, "FAKE", "", "2026-01-02")).reason.endswith("on 2026-01-02.")


def test_every_field_of_the_rule_comes_from_its_own_parameter():
    """Called here, not at import: a rule built at import time is built before any test runs."""
    shared = json.dumps({"threshold": 0.6, "unsure_margin": 0.1, "max_detail_lost": 7.5, "max_side": 96,
                         "confidence": {"native": 0.9, "resized": 0.8}})
    rule = Rule.from_parameters({"a": {"ensemble_weight": "0.4", "verdict_rule": shared},
                                 "b": {"ensemble_weight": "2", "verdict_rule": shared}})
    assert (rule.weights, rule.threshold, rule.unsure_margin, rule.max_detail_lost, rule.max_side, rule.confidence) == (
        {"a": 0.4, "b": 2.0}, 0.6, 0.1, 7.5, 96, {"native": 0.9, "resized": 0.8})
    assert [type(v) for v in (rule.threshold, rule.unsure_margin, rule.max_detail_lost, rule.max_side)] == [
        float, float, float, int]


def test_an_upload_at_the_side_limit_with_too_much_detail_is_unsure_for_its_detail_not_its_size():
    assert decide({"a": 0.99, "b": 0.99}, (128, 128), 12.0).reason == (
        f"{DOMAIN} This 128x128 image is not one of those: it is detail that their 32x32 view discards "
        "(12.0 > 8 grey levels). On images from outside CIFAKE their answers were no better than chance, so they do not decide.")
