"""The examiner (fakelens/examine.py): one upload read into pixels, provenance and hashes, as every caller judges it."""
from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image, PngImagePlugin

from fakelens import images, known, provenance
from fakelens.examine import Examiner


def png(w: int, h: int, **text: str) -> bytes:
    info = PngImagePlugin.PngInfo()
    for key, value in text.items():
        info.add_text(key, value)
    buf = io.BytesIO()
    Image.fromarray(np.random.default_rng(5).integers(0, 256, (h, w, 3), dtype=np.uint8)).save(buf, "PNG", pnginfo=info)
    return buf.getvalue()


class Reader:
    """A C2PA reader standing in for the child process: every manifest says an AI made the image."""

    def __init__(self):
        self.asked = 0

    def read(self, raw, timeout_s):
        self.asked += 1
        return {"active_manifest": "m", "manifests": {"m": {"claim_generator": "Gen", "assertions": [
            {"label": "c2pa.actions", "data": {"actions": [{"digitalSourceType": "trainedAlgorithmicMedia"}]}}]}}}


def test_an_upload_is_examined_into_the_models_view_its_provenance_and_on_request_its_hashes():
    raw = png(60, 40, parameters="a cat\nSteps: 20, Sampler: Euler")
    plain, hashed = Examiner()(raw), Examiner(hashes=True)(raw)
    expected = images.decode(raw)
    for ex in (plain, hashed):
        assert ex.raw == raw
        assert (ex.upload.width, ex.upload.height, ex.upload.detail_lost, ex.upload.format) == (
            60, 40, expected.detail_lost, "PNG")
        assert (ex.upload.pixels == expected.pixels).all()
        assert ex.provenance == provenance.Provenance(True, (provenance.Evidence(
            "png_text", "parameters: generation parameters (prompt, Steps, Sampler, Seed)", "AUTOMATIC1111 web UI", True),))
    assert plain.hashes is None
    assert hashed.hashes == known.hashes_of(raw, images.open_rgb(raw))


def test_the_examiners_pixel_limit_and_c2pa_reader_are_the_ones_it_was_given():
    with pytest.raises(images.TooManyPixels, match="image is 20x10 = 200 pixels; the limit is 199"):
        Examiner(max_pixels=199)(png(20, 10))
    assert Examiner(max_pixels=200)(png(20, 10)).upload.width == 20
    reader = Reader()
    found = Examiner(c2pa=reader)(png(40, 40, note="c2pa")).provenance
    assert reader.asked == 1 and found.ai_generated is True and found.evidence[0].generator == "Gen"
