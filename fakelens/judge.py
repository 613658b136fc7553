"""The judge: examined uploads plus the models' answers in, one typed judgement per upload out.

The only place a verdict is decided. The gateway, `make evaluate` and the benchmarks all call it, with
whichever backend asked the models (fakelens.backends).
"""
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from fakelens.backends import FanOut
from fakelens.contract import rule_of
from fakelens.examine import Examined
from fakelens.known import Index, Match
from fakelens.verdict import Decision, Reading, Rule


@dataclass(frozen=True)
class ModelAnswer:
    """One model's answer about one upload."""
    prob_fake: float
    verdict: str  # the model alone, read at the rule's threshold: REAL or FAKE
    latency_ms: float  # of the call that answered the upload's whole batch
    version: str


@dataclass(frozen=True)
class Judgement:
    """Everything decided about one upload."""
    examined: Examined
    rule: Rule  # the rule it was judged under
    models: dict[str, ModelAnswer]  # the models that answered
    errors: dict[str, str]  # the models that did not, and why
    reading: Reading  # the answers read through the rule: combined P(FAKE), the domain
    match: Match | None  # the bank entry the upload matched; it decides unless provenance did first
    decision: Decision

    @property
    def thumbnail_verdict(self) -> str:
        """What the models' combined score says of the 32x32 view, whether or not it decided."""
        return self.rule.label(self.reading.prob_fake)


class Judge:
    """Decides with the verdict rule the models' answers carry; with an index, a copy of a reviewed image
    is decided by its review."""

    def __init__(self, index: Index | None = None):
        self.index = index

    def judge(self, examined: Sequence[Examined], fanout: FanOut) -> list[Judgement]:
        """One judgement per upload, in order; RuleError when the answers carry no usable verdict rule."""
        rule = rule_of({m: a.parameters for m, a in fanout.answers.items()})
        errors = {m: str(e) for m, e in sorted(fanout.errors.items())}
        out = []
        for i, ex in enumerate(examined):
            p_models = {m: float(a.p_fake[i]) for m, a in fanout.answers.items()}
            models = {m: ModelAnswer(p, rule.label(p), a.latency_ms, a.version)
                      for (m, a), p in zip(fanout.answers.items(), p_models.values())}
            reading = rule.read(p_models, (ex.upload.width, ex.upload.height), ex.upload.detail_lost)
            match = self.index.match(ex.hashes) if self.index is not None and ex.hashes is not None else None
            out.append(Judgement(ex, rule, models, errors, reading, match, rule.decide(reading, ex.provenance, match)))
        return out
