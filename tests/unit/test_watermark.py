"""Generator watermarks (gateway/watermark.py) against invisible-watermark's own decoder, bit for bit,
and as provenance evidence on files the tests make."""
from __future__ import annotations

import io

import cv2
import numpy as np
import pytest
import pywt
from PIL import Image

from fakelens import provenance, watermark
from fakelens.examine import Examiner
from fakelens.images import open_rgb
from training.realworld import load_set, realworld_dir
from training.watermarks import embed, reference_encoder

MARKS = {m.generator: m for m in watermark.MARKS}


@pytest.fixture(scope="module")
def photos() -> list[np.ndarray]:
    """Real photos from the dev set, 256 px or more (hosts for a mark, and unmarked images)."""
    out = []
    for item in load_set(realworld_dir()):
        rgb = np.asarray(open_rgb(item["raw"], 50_000_000))
        if item["label"] == "real_photo" and min(rgb.shape[:2]) >= 256:
            out.append(rgb[:768, :768])
    return out[:8]


def as_bgr(rgb: np.ndarray, swap: bool) -> np.ndarray:
    """Float BGR as a generator hands it to imwatermark (swap: RGB handed over as if it were BGR)."""
    return np.ascontiguousarray((rgb if swap else rgb[:, :, ::-1]).astype(np.float32))


def reference_bits(rgb: np.ndarray, n: int, swap: bool) -> np.ndarray:
    return reference_encoder().EmbedMaxDct(wmLen=n).decode(as_bgr(rgb, swap)).astype(np.uint8)


def reference_votes(rgb: np.ndarray, swap: bool) -> np.ndarray:
    """Every block's vote, from the reference's own steps (EmbedMaxDct.decode with one bit per block)."""
    bgr = as_bgr(rgb, swap)
    rows, cols = bgr.shape[0] // 4 * 4, bgr.shape[1] // 4 * 4
    ca, _ = pywt.dwt2(cv2.cvtColor(bgr, cv2.COLOR_BGR2YUV)[:rows, :cols, 1], "haar")
    return np.array(reference_encoder().EmbedMaxDct(wmLen=1).decode_frame(ca, watermark.SCALE, [[]])[0], np.uint8)


@pytest.mark.parametrize("generator", sorted(MARKS))
def test_decoder_matches_the_reference_bit_for_bit(photos, generator):
    m = MARKS[generator]
    for rgb in photos[:4]:
        for image in (rgb, embed(rgb, m.bits)):
            for swap in (False, True):
                votes = watermark.block_votes(watermark.u_channel(image, swap))
                assert (votes == reference_votes(image, swap)).all()
                assert (watermark.decode_bits(votes, len(m.bits)) == reference_bits(image, len(m.bits), swap)).all()


def jpeg(rgb: np.ndarray, **save) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(rgb).save(buf, "JPEG", **save)
    return buf.getvalue()


def read(raw: bytes) -> provenance.Provenance:
    return Examiner()(raw).provenance


@pytest.mark.parametrize("generator", sorted(MARKS))
def test_a_marked_photo_saved_as_jpeg_q95_without_subsampling_is_evidence_of_generation(photos, generator):
    m = MARKS[generator]
    found = read(jpeg(embed(photos[0], m.bits), quality=95, subsampling=0))
    [hit] = [e for e in found.evidence if e.source == "watermark"]
    assert found.ai_generated is True and hit.generator == generator
    assert m.min_matched <= hit.extra["bits_matched"] <= hit.extra["of"] == len(m.bits)


def test_unmarked_photos_and_destructive_resaves_are_left_alone(photos):
    sdxl = MARKS["Stable Diffusion XL"]
    for rgb in photos:
        assert read(jpeg(rgb, quality=95, subsampling=0)).evidence == ()
    marked = embed(photos[0], sdxl.bits)
    assert read(jpeg(marked, quality=95)).evidence == ()  # Pillow's default 4:2:0 destroys the mark
    half = np.asarray(Image.fromarray(marked).resize((marked.shape[1] // 2, marked.shape[0] // 2)))
    assert watermark.best_matches(half)["Stable Diffusion XL"] < sdxl.min_matched


def test_images_too_small_to_carry_a_mark_are_not_decoded():
    tiny = np.random.default_rng(0).integers(0, 256, (255, 256, 3), dtype=np.uint8)
    [(mark, bits)] = watermark.found(embed(np.pad(tiny, ((0, 1), (0, 0), (0, 0))), MARKS["FLUX"].bits))
    assert mark.generator == "FLUX" and bits >= mark.min_matched  # 256x256 carries it
    assert watermark.found(tiny) == []


def test_watermark_reading_can_be_switched_off_for_the_benchmark(photos):
    from gateway.config import from_env

    raw = jpeg(embed(photos[0], MARKS["FLUX"].bits), quality=95, subsampling=0)
    assert Examiner()(raw).provenance.ai_generated is True
    assert Examiner(watermarks=False)(raw).provenance == provenance.NOTHING
    assert from_env({"FAKELENS_WATERMARKS": "0"})["WATERMARKS"] is False and from_env({})["WATERMARKS"] is True
