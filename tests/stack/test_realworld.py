"""Images from outside CIFAKE through the real stack: the real-world issue's bar, and the same
verdicts as the benchmark computes in process (training/realworld.py)."""
from __future__ import annotations

import pytest
import requests

from tests.conftest import ROOT
from training import realworld

FOLDER = realworld.realworld_dir()
pytestmark = pytest.mark.skipif(not (FOLDER / "labels.csv").is_file(), reason=f"no real-world set at {FOLDER}")


@pytest.fixture(scope="module")
def dev_set() -> list[dict]:
    return realworld.load_set(FOLDER)


def verdicts(url: str, raws: list[bytes]) -> list[str | None]:
    out = []
    for start in range(0, len(raws), 8):
        files = [("image", (f"{i}.img", raw)) for i, raw in enumerate(raws[start:start + 8])]
        resp = requests.post(url + "/v1/predict/batch", files=files, timeout=120)
        assert resp.status_code == 200, resp.text[:300]
        out += [r["verdict"] for r in resp.json()["results"]]
    return out


@pytest.mark.parametrize("container", ["as_shipped", "other_container"])
def test_real_world_images_through_the_stack(gateway_url, dev_set, container):
    raws = [d["raw"] if container == "as_shipped" else realworld.other_container(d["raw"], d["label"]) for d in dev_set]
    got = verdicts(gateway_url, raws)
    rows = [{"label": d["label"], "verdict": v} for d, v in zip(dev_set, got)]
    figures = realworld.figures([{**r, "prob_fake": 0.5} for r in rows])
    print(f"\n{container}: " + "; ".join(f"{k}: wrong {f['wrong_rate']:.0%}, UNSURE {f['unsure_rate']:.0%}, "
                                         f"right {f['coverage']:.0%}" for k, f in figures.items() if isinstance(f, dict)))
    for label in realworld.RIGHT:
        assert figures[label]["wrong_rate"] <= 0.05, (label, figures[label])
    assert figures["decided_right"] is None or figures["decided_right"] >= 0.95, figures
    served = realworld.Served(ROOT / "model_repository")
    assert got == [r["verdict"] for r in served(raws)]  # what `make evaluate` reports is what the stack says
