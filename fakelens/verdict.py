"""The verdict rule: provenance first, then the models, and UNSURE where the models cannot know.

The rule's numbers (each model's weight, the threshold, the UNSURE margin, the domain limits
and the measured confidence of a decided verdict) are fitted by `make evaluate` and written
into every model's config.pbtxt (`parameters`), so they travel with the models; every backend
(fakelens.backends) hands them over with the models' answers.

Where the models may decide: on what they were shown to be right about, and nowhere else.
- "native": a 32x32 upload, CIFAKE's own size.
- "resized": a small upload (no side over `max_side`, the largest enlargement measured) that
  is a 32x32 image enlarged: its 32x32 view discards at most `max_detail_lost` grey levels,
  and every model lands on the same side of the threshold.
Anything else (a phone photo, a painting, a 1024 px render) is UNSURE: on real-world images the
models' scores were no better than a coin flip (README, What it can judge), and a wrong answer with
a high confidence is the worst thing the service can say. The pixels decide the domain, never
the container: the same pixels as PNG, WebP or JPEG get the same answer.
"""
from __future__ import annotations

import json
from dataclasses import dataclass

from fakelens.images import SIZE
from fakelens.known import Match
from fakelens.provenance import Provenance

DOMAIN = ("The models judge images like the ones they learned from: 32x32 photos of everyday "
          "objects (CIFAR-10) and 32x32 Stable Diffusion 1.4 renders, and small enlargements of them.")
NATIVE, RESIZED = "native", "resized"
PROVENANCE, REVIEW, MODELS = "provenance", "review", "models"  # what decided a verdict


class RuleError(RuntimeError):
    """The models carry no verdict rule, or ones that disagree."""


@dataclass(frozen=True)
class Rule:
    """The verdict rule the model repository states (written by `make evaluate`)."""
    weights: dict[str, float]  # ensemble weight of each model, fitted on validation
    threshold: float  # ensemble P(FAKE) at or above it reads FAKE
    unsure_margin: float  # closer than this to the threshold: UNSURE
    max_detail_lost: float  # a larger upload whose 32x32 view discards more detail is not an enlarged 32x32 image
    max_side: int  # a larger upload with a side over this is outside the models' domain
    confidence: dict[str, float]  # share of decided verdicts measured right: {"native": .., "resized": ..}

    @classmethod
    def from_parameters(cls, params: dict[str, dict[str, str]]) -> Rule:
        """From {model: its config.pbtxt parameters}: `ensemble_weight` each, one shared `verdict_rule` JSON."""
        missing = sorted(m for m, p in params.items() if "ensemble_weight" not in p or "verdict_rule" not in p)
        if missing:
            raise RuleError(f"no verdict rule in the config of {', '.join(missing)} (run `make evaluate`)")
        rules = {p["verdict_rule"] for p in params.values()}
        if len(rules) != 1:
            raise RuleError(f"the models carry different verdict rules: {sorted(rules)} (run `make evaluate`)")
        shared = json.loads(rules.pop())
        try:
            return cls({m: float(p["ensemble_weight"]) for m, p in params.items()}, float(shared["threshold"]),
                       float(shared["unsure_margin"]), float(shared["max_detail_lost"]), int(shared["max_side"]),
                       {k: float(shared["confidence"][k]) for k in (NATIVE, RESIZED)})
        except KeyError as exc:
            raise RuleError(f"the verdict rule lacks {exc} (written by an older `make evaluate`: run it again)") from None

    def combine(self, p_fake: dict[str, float]) -> float:
        """Weighted mean P(FAKE) of the models that answered, the weights renormalised over those (each model's
        value may be an array of them: evaluation combines a whole split at once)."""
        w = {m: self.weights.get(m, 0.0) for m in p_fake}
        total = sum(w.values())
        if total <= 0:  # only zero-weight models answered: they count equally
            w, total = {m: 1.0 for m in p_fake}, len(p_fake)
        return sum(w[m] * p for m, p in p_fake.items()) / total

    def label(self, p: float) -> str:
        """What a P(FAKE) reads as on its own: FAKE at or above the threshold, else REAL."""
        return "FAKE" if p >= self.threshold else "REAL"

    def domain(self, size: tuple[int, int], detail_lost: float) -> str | None:
        """NATIVE, RESIZED, or None when the upload is not an image the models know."""
        if size == (SIZE, SIZE):
            return NATIVE
        if max(size) <= self.max_side and detail_lost <= self.max_detail_lost:
            return RESIZED
        return None

    def read(self, p_models: dict[str, float], size: tuple[int, int], detail_lost: float) -> Reading:
        """The models' answers for one upload as the rule reads them, each figure computed once."""
        return Reading(dict(p_models), self.combine(p_models), self.domain(size, detail_lost), size, detail_lost)

    def decide(self, reading: Reading, provenance: Provenance, match: Match | None = None) -> Decision:
        """AI-positive provenance first, then a match in a bank of reviewed images, then the models."""
        if provenance.ai_generated:
            hit = next(e for e in provenance.evidence if e.ai_generated)
            by = f" ({hit.generator})" if hit.generator else ""
            return Decision("FAKE", PROVENANCE, f"The file says it was generated: {hit.source} {hit.detail}{by}.")
        if match:
            how = "the same file" if match.distance == 0 else f"a copy at PDQ distance {match.distance}"
            note = f": {match.note}" if match.note else "."
            return Decision(match.label, REVIEW, f"Seen before ({how}): reviewed as {match.label} on "
                                                   f"{(match.reviewed_at or '')[:10]}{note}")
        if reading.domain is None:
            w, h = reading.size
            why = (f"larger than the {self.max_side} px they were measured on" if max(reading.size) > self.max_side else
                   f"detail that their 32x32 view discards ({reading.detail_lost:.1f} > {self.max_detail_lost:g} grey levels)")
            return Decision("UNSURE", None, f"{DOMAIN} This {w}x{h} image is not one of those: it is {why}. On images "
                                            "from outside CIFAKE their answers were no better than chance, so they do not decide.")
        p_fake = reading.prob_fake
        if abs(p_fake - self.threshold) < self.unsure_margin:
            return Decision("UNSURE", None, f"The models' combined score ({p_fake:.2f}) is too close to the line "
                                            f"({self.threshold:g} +/- {self.unsure_margin:g}) to mean anything.",
                            domain=reading.domain, models_used=True)
        verdict = self.label(p_fake)
        dissent = sorted(m for m, p in reading.p_models.items() if self.label(p) != verdict)
        if reading.domain == RESIZED and dissent:
            return Decision("UNSURE", None, f"This is an enlarged image, and the models disagree about it "
                                            f"({', '.join(dissent)} {'says' if len(dissent) == 1 else 'say'} "
                                            f"{'REAL' if verdict == 'FAKE' else 'FAKE'}).",
                            domain=reading.domain, models_used=True)
        return Decision(verdict, MODELS, None, confidence=self.confidence[reading.domain], domain=reading.domain,
                        models_used=True)


@dataclass(frozen=True)
class Reading:
    """The models' answers for one upload, read through the rule."""
    p_models: dict[str, float]  # each model's P(FAKE)
    prob_fake: float  # their weighted mean (Rule.combine)
    domain: str | None  # NATIVE, RESIZED, or None: outside what the models know
    size: tuple[int, int]  # the upload's width and height
    detail_lost: float  # grey levels its 32x32 view discards


@dataclass(frozen=True)
class Decision:
    """The verdict on one upload and what decided it."""
    verdict: str  # REAL, FAKE or UNSURE
    decided_by: str | None  # provenance, review, models; None when UNSURE
    reason: str | None  # why, for a person; None when the models decided
    confidence: float | None = None  # share of such model verdicts measured right; only when the models decided
    domain: str | None = None  # the domain the models judged in; None when they did not judge
    models_used: bool = False  # whether the models' scores entered the decision
