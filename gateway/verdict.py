"""The verdict rule: provenance first, then the models, and UNSURE where the models cannot know.

The rule's numbers (each model's weight, the threshold, the UNSURE margin and the domain
limit) are fitted by `make evaluate` and written into every model's config.pbtxt
(`parameters`), so they travel with the models; the gateway reads them from Triton.
"""
from __future__ import annotations

import json
from dataclasses import dataclass

DOMAIN = ("The models judge images like the ones they learned from: 32x32 photos of everyday "
          "objects (CIFAR-10) and 32x32 Stable Diffusion 1.4 renders.")


class RuleError(RuntimeError):
    """The models carry no verdict rule, or ones that disagree."""


@dataclass(frozen=True)
class Rule:
    weights: dict[str, float]  # ensemble weight of each model, fitted on validation
    threshold: float  # ensemble P(FAKE) at or above it reads FAKE
    unsure_margin: float  # closer than this to the threshold: UNSURE
    max_detail_lost: float  # an upload whose 32x32 view discards more detail is outside the models' domain

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
        return cls({m: float(p["ensemble_weight"]) for m, p in params.items()}, float(shared["threshold"]),
                   float(shared["unsure_margin"]), float(shared["max_detail_lost"]))

    def combine(self, p_fake: dict[str, float]) -> float:
        """Weighted mean P(FAKE) of the models that answered, the weights renormalised over those."""
        w = {m: self.weights.get(m, 0.0) for m in p_fake}
        total = sum(w.values())
        if total <= 0:  # only zero-weight models answered: they count equally
            w, total = {m: 1.0 for m in p_fake}, len(p_fake)
        return sum(w[m] * p for m, p in p_fake.items()) / total

    def label(self, p: float) -> str:
        return "FAKE" if p >= self.threshold else "REAL"

    def decide(self, p_fake: float, detail_lost: float, size: tuple[int, int], provenance: dict) -> dict:
        """{"verdict", "decided_by", "reason", "confidence"} for one upload."""
        if provenance.get("ai_generated"):
            hit = next(e for e in provenance["evidence"] if e["ai_generated"])
            by = f" ({hit['generator']})" if hit.get("generator") else ""
            return {"verdict": "FAKE", "decided_by": "provenance", "confidence": None,
                    "reason": f"The file says it was generated: {hit['source']} {hit['detail']}{by}."}
        if detail_lost > self.max_detail_lost:
            w, h = size
            return {"verdict": "UNSURE", "decided_by": None, "confidence": None,
                    "reason": f"{DOMAIN} This {w}x{h} image has detail that their 32x32 view of it discards "
                              f"({detail_lost:.1f} > {self.max_detail_lost:g} grey levels), and on such images "
                              "their answers were no better than chance, so they do not decide."}
        if abs(p_fake - self.threshold) < self.unsure_margin:
            return {"verdict": "UNSURE", "decided_by": None, "confidence": None,
                    "reason": f"The models' combined score ({p_fake:.2f}) is too close to the line "
                              f"({self.threshold:g} +/- {self.unsure_margin:g}) to mean anything."}
        return {"verdict": self.label(p_fake), "decided_by": "models",
                "confidence": round(max(p_fake, 1 - p_fake), 6), "reason": None}
